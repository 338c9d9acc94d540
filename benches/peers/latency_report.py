"""Markdown tables of benches/peers/latency.sh's results.jsonl: one per scenario and guarantee.

Usage: python3 benches/peers/latency_report.py RESULTS.jsonl [...] > report.md

Several files (runs of different guarantees or rates) make one report. "appended" is the
output's Kafka timestamp (LogAppendTime: when the broker appended it) minus the input's;
"visible" is when the read_committed tap received it minus the input's timestamp; "steady" leaves
out the inputs of the first second. All in milliseconds, HDR histograms, every joined output.
"""

import json
import sys


def main() -> None:
    rows = [json.loads(line) for path in sys.argv[1:] for line in open(path) if line.strip()]
    runs = [r for r in rows if r.get("kind") == "run"]
    for r in runs:
        print(f"Run {r['date']}, {r['host']}, {r['guarantee']}, fluxo {r['fluxo']}; uptime at start: {r['uptime'].strip()}")
    print()
    engines = [r for r in rows if r.get("kind") == "engine"]
    keys = list(dict.fromkeys((r["scenario"], r["guarantee"]) for r in engines))
    for scenario, guarantee in keys:
        print(f"### {scenario}, {guarantee}\n")
        print("| engine | rate/s | outputs joined | appended p50 / p90 / p99 / max | visible p50 / p90 / p99 / max | steady visible p99 | load (start / end) |")
        print("|---|---:|---:|---|---|---:|---|")
        for r in engines:
            if (r["scenario"], r["guarantee"]) != (scenario, guarantee):
                continue
            if "error" in r or not r.get("visible_ms"):
                print(f"| {r['engine']} | {r['rate']:,} | {r.get('joined', 0)} | {r.get('error', 'no outputs')} | | | |")
                continue
            lat, vis = r["latency_ms"], r["visible_ms"]
            steady = (r.get("steady_visible_ms") or {}).get("p99", "")
            q = lambda h: f"{h['p50']} / {h['p90']} / {h['p99']} / {h['max']}"
            print(f"| {r['engine']} | {r['rate']:,} | {r['joined']:,} | {q(lat)} | {q(vis)} | {steady} | {r['load']} |")
        print()


if __name__ == "__main__":
    main()
