#!/usr/bin/env python3
"""Writes the Markdown report of benches/scaling.sh from its cases' results.jsonl.

scaling_report.py OUT   (OUT holds one directory per case: volume-*, keys-*, instances-*)

Volume: per scenario, the cost per record at each size against the smallest (the issue's target:
flat within 20 % from 100k to 5M). Keys: the distinct keys the preload touched, estimated from the
generator (uniform draws: K * (1 - exp(-n / K)), n the new records: all quotes, 98 % of the ledger
entries, the rest being re-sent duplicates of recent ones), and the RSS per million accounts of
consolidation state: (peak RSS - peak RSS of the smallest-key run at the same cache) / (accounts
touched - those of the smallest run), times 10^6. Instances: totals over the group.
"""
import json
import math
import pathlib
import sys


def load(out):
    """Each case directory's run line and fluxo line, by case name."""
    cases = {}
    for f in sorted(pathlib.Path(out).glob("*/results.jsonl")):
        rows = [json.loads(l) for l in f.read_text().splitlines() if l.strip()]
        run = next((r for r in rows if r.get("kind") == "run"), {})
        res = next((r for r in rows if r.get("engine") == "fluxo"), None)
        if res:
            cases[f.parent.name] = (run, res)
    return cases


def touched(scenario, keys, n):
    """Distinct keys a preload of n records over `keys` keys is expected to touch."""
    fresh = n * (0.98 if scenario == "consolidation" else 1.0)
    return keys * (1 - math.exp(-fresh / keys))


def row(run, r):
    """The columns every table shares."""
    if "error" in r:
        return f"{r['error']} | | | | | "
    return (f"{r['records_per_s']:,.0f} | {r['cpu_s_per_M']:.1f} | {r['broker_cpu_s_per_M']:.1f} | "
            f"{r['hwm_mib'] or 0:,.0f} | {r['seconds']:.1f} | {r['load']}")


HEAD = "records/s | CPU-s per M (fluxo) | CPU-s per M (broker) | peak RSS MiB | s | load 1/5/15 min (start / end)"


def volume(cases):
    print("## Volume\n")
    print(f"| scenario | records | {HEAD} | CPU per record vs smallest |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for scenario in ("price-change", "consolidation"):
        runs = sorted(((run["n"], run, r) for name, (run, r) in cases.items()
                       if name.startswith(f"volume-{scenario}-")), key=lambda t: t[0])
        base = next((r["cpu_s_per_M"] for _, _, r in runs if "error" not in r), None)
        for n, run, r in runs:
            ratio = f"{r['cpu_s_per_M'] / base:.2f} ×" if base and "error" not in r else ""
            print(f"| {scenario} | {n:,} | {row(run, r)} | {ratio} |")
    print()


def keys(cases):
    print("## Keys (distinct accounts / symbols)\n")
    print(f"| scenario | keys | cache_mb | keys touched (est.) | records | {HEAD} |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    groups = {}
    for name, (run, r) in cases.items():
        if not name.startswith("keys-"):
            continue
        scenario = "consolidation" if name.startswith("keys-consolidation") else "price-change"
        k = int(run["keys"])
        t = touched(scenario, k, run["n"])
        groups.setdefault((scenario, run.get("cache_mb") or "512", run["n"]), []).append((k, t, run, r))
    for (scenario, cache, _), runs in sorted(groups.items()):
        for k, t, run, r in sorted(runs, key=lambda x: x[0]):
            print(f"| {scenario} | {k:,} | {cache} | {t:,.0f} | {run['n']:,} | {row(run, r)} |")
    print()
    for (scenario, cache, n), runs in sorted(groups.items()):
        if scenario != "consolidation":
            continue
        runs = sorted((x for x in runs if "error" not in x[3]), key=lambda x: x[0])
        if len(runs) < 2:
            continue
        k0, t0, _, r0 = runs[0]
        for k, t, _, r in runs[1:]:
            per_m = (r["hwm_mib"] - r0["hwm_mib"]) / (t - t0) * 1e6
            print(f"- consolidation, {n:,} entries, cache_mb {cache}: {k:,} against {k0:,} accounts: "
                  f"+{r['hwm_mib'] - r0['hwm_mib']:,.0f} MiB peak RSS for {t - t0:,.0f} more accounts "
                  f"touched = **{per_m:,.0f} MiB per million accounts**")
    print()


def instances(cases):
    print("## Instances in one group (consolidation)\n")
    print(f"| instances | records | {HEAD} | RSS each MiB | records read (all instances) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|---|---:|")
    runs = sorted(((run.get("instances", 1), run, r) for name, (run, r) in cases.items()
                   if name.startswith("instances-")), key=lambda t: t[0])
    for k, run, r in runs:
        each = ", ".join(f"{h:.0f}" for h in r.get("hwm_mib_each", [r.get("hwm_mib") or 0]))
        read = r.get("records_in_total")
        read = f"{read:,.0f}" if read else "–"
        print(f"| {k} | {run['n']:,} | {row(run, r)} | {each} | {read} |")
    print()


def main():
    cases = load(sys.argv[1])
    first = min((run.get("date", "") for run, _ in cases.values()), default="")
    last = max((run.get("date", "") for run, _ in cases.values()), default="")
    some = next(iter(cases.values()), ({}, {}))[0]
    print(f"Scaling runs {first} to {last} (case starts), {some.get('host', '')}, "
          f"{some.get('guarantee', '')}, fluxo tree {some.get('fluxo', '')}\n")
    volume(cases)
    keys(cases)
    instances(cases)


if __name__ == "__main__":
    main()
