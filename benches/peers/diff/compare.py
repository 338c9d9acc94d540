#!/usr/bin/env python3
"""Compares the final outputs of fluxo, Kafka Streams and Flink (the differential check).

compare.py OUT_DIR GUARANTEE: reads OUT_DIR/{fluxo,ks,flink}-{alerts,balances}.jsonl (one JSON
object per line; fluxo's as `fluxo consume` prints them, the peers' as they write them) and
prints every mismatch against fluxo: alerts compared as a set keyed by alert_id with every
field, daily balances as the last balance per account/day with every field but updated_at
(a wall clock). Under exactly_once a repeated output is a mismatch too (read_committed must
see each once); under at-least-once repeats are counted and reported, not failed. Writes
OUT_DIR/summary.json; exit 1 on any mismatch.
"""
import json
import sys
from decimal import Decimal
from pathlib import Path

ALERT_DEC = ("from_price", "to_price", "change_pct", "threshold_pct")
BAL_DEC = ("total_credits", "total_debits", "net")


def load(path):
    rows = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


def norm_alert(a):
    out = {}
    for k, v in a.items():
        out[k] = Decimal(str(v)) if k in ALERT_DEC else v
    return out


def norm_balance(b):
    out = {k: v for k, v in b.items() if k != "updated_at"}
    for k in BAL_DEC:
        out[k] = Decimal(str(out[k]))
    return out


def main():
    out_dir, guarantee = Path(sys.argv[1]), sys.argv[2]
    exactly = guarantee == "exactly_once"
    mismatches, summary = [], {"guarantee": guarantee, "engines": {}}
    finals = {}
    for eng in ("fluxo", "ks", "flink"):
        alerts = [norm_alert(a) for a in load(out_dir / f"{eng}-alerts.jsonl")]
        balances = [norm_balance(b) for b in load(out_dir / f"{eng}-balances.jsonl")]
        by_id, repeats = {}, 0
        for a in alerts:
            if a["alert_id"] in by_id:
                repeats += 1
                if by_id[a["alert_id"]] != a:
                    mismatches.append(f"{eng}: alert {a['alert_id']} twice with different fields")
            by_id[a["alert_id"]] = a
        last, seen = {}, {}
        for b in balances:
            key = f"{b['account_id']}/{b['business_date']}"
            seen[(key, b["entry_count"])] = seen.get((key, b["entry_count"]), 0) + 1
            last[key] = b
        bal_repeats = sum(n - 1 for n in seen.values())
        if exactly and (repeats or bal_repeats):
            mismatches.append(f"{eng}: {repeats} repeated alerts, {bal_repeats} repeated balances under exactly_once")
        finals[eng] = (by_id, last)
        summary["engines"][eng] = {"alert_records": len(alerts), "alerts": len(by_id), "alert_repeats": repeats,
                                   "balance_records": len(balances), "balance_keys": len(last),
                                   "balance_repeats": bal_repeats}
    ref_alerts, ref_bal = finals["fluxo"]
    if not ref_alerts or not ref_bal:
        mismatches.append("fluxo produced no alerts or no balances: nothing to compare")
    for eng in ("ks", "flink"):
        alerts, bal = finals[eng]
        for k in sorted(ref_alerts.keys() - alerts.keys()):
            mismatches.append(f"{eng}: missing alert {k}: {ref_alerts[k]}")
        for k in sorted(alerts.keys() - ref_alerts.keys()):
            mismatches.append(f"{eng}: extra alert {k}: {alerts[k]}")
        for k in sorted(alerts.keys() & ref_alerts.keys()):
            if alerts[k] != ref_alerts[k]:
                mismatches.append(f"{eng}: alert {k} differs: fluxo {ref_alerts[k]} / {eng} {alerts[k]}")
        for k in sorted(ref_bal.keys() - bal.keys()):
            mismatches.append(f"{eng}: missing balance {k}: {ref_bal[k]}")
        for k in sorted(bal.keys() - ref_bal.keys()):
            mismatches.append(f"{eng}: extra balance {k}: {bal[k]}")
        for k in sorted(bal.keys() & ref_bal.keys()):
            if bal[k] != ref_bal[k]:
                mismatches.append(f"{eng}: balance {k} differs: fluxo {ref_bal[k]} / {eng} {bal[k]}")
    summary["mismatches"] = len(mismatches)
    summary["first_mismatches"] = mismatches[:50]
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    for m in mismatches:
        print(f"MISMATCH {guarantee}: {m}")
    e = summary["engines"]
    print(f"diff {guarantee}: alerts fluxo {e['fluxo']['alerts']} ks {e['ks']['alerts']} flink {e['flink']['alerts']}; "
          f"balances (account/day) fluxo {e['fluxo']['balance_keys']} ks {e['ks']['balance_keys']} "
          f"flink {e['flink']['balance_keys']}; {len(mismatches)} mismatches")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
