#!/usr/bin/env python3
"""Markdown report of benches/e2e.sh: reads its results.jsonl (and the decision files it names).

Usage: python3 benches/e2e_report.py /tmp/fluxo-e2e-<pid>/results.jsonl

Risk latency = the decision's own `latency_ms` (decided_at - transaction event_time, both stamped
by fluxo: the event time by the simulating producer at send time, decided_at by the risk-scoring
processor). Percentiles are nearest-rank over every decision of the run (deduplicated by
transaction id). Stdlib only.
"""

import json
import math
import sys

STEADY_AFTER_MS = 1000


def pct(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def read_metrics(path):
    """Prometheus text → {'name{labels}': value}; empty when the file is missing."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("#") or not line.strip():
                    continue
                key, _, value = line.rpartition(" ")
                try:
                    out[key] = float(value)
                except ValueError:
                    pass
    except OSError:
        pass
    return out


def metric_delta(now, before, prefix):
    """Sum over the series starting with `prefix`, minus the same sum in `before`."""
    def total(m):
        return sum(v for k, v in m.items() if k.startswith(prefix))
    return total(now) - total(before)


def checkpoint_note(now, before, processor):
    key = f'fluxo_checkpoint_duration_seconds_%s{{processor="{processor}"}}'
    n = now.get(key % "count", 0) - before.get(key % "count", 0)
    secs = now.get(key % "sum", 0) - before.get(key % "sum", 0)
    if n <= 0:
        return f"{processor}: no checkpoint"
    return f"{processor}: {n:.0f} checkpoints, mean {secs / n * 1000:.0f} ms each ({secs:.1f} s in all)"


def produced(rec):
    wall, user, sys_ = (float(x) for x in rec["produce_time"].split())
    return wall, user + sys_


def risk_row(rec):
    decisions = {}
    with open(rec["decisions"]) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            d = json.loads(line)
            if d.get("event_time", 0) >= rec["t0_ms"]:
                decisions[d["transaction_id"]] = d
    ds = list(decisions.values())
    all_lat = sorted(d["latency_ms"] for d in ds)
    # Steady state: leave out transactions stamped in the producer's first second, which wait
    # for `fluxo produce` itself to connect (about 0.5 s on Tansu), not for fluxo.
    first = min((d["event_time"] for d in ds), default=0)
    lat = sorted(d["latency_ms"] for d in ds if d["event_time"] >= first + STEADY_AFTER_MS)
    events = sorted(d["event_time"] for d in ds)
    decided = sorted(d["decided_at"] for d in ds)
    n = len(ds)
    send_rate = (n - 1) / ((events[-1] - events[0]) / 1000) if n > 1 and events[-1] > events[0] else float("nan")
    decide_rate = (n - 1) / ((decided[-1] - decided[0]) / 1000) if n > 1 and decided[-1] > decided[0] else float("nan")
    degraded = sum(1 for d in ds if d.get("degraded"))
    by_decision = {}
    for d in ds:
        by_decision[d["decision"]] = by_decision.get(d["decision"], 0) + 1
    # Drift check: p99 of the last third of the run (by event time) against the whole.
    ds.sort(key=lambda d: d["event_time"])
    tail = sorted(d["latency_ms"] for d in ds[2 * n // 3:])
    # p99 per 5 s of event time: shows whether latency is steady, grows (overload) or spikes
    # (another process took the CPU).
    windows = []
    if ds:
        start = ds[0]["event_time"]
        buckets = {}
        for d in ds:
            buckets.setdefault((d["event_time"] - start) // 5000, []).append(d["latency_ms"])
        windows = [pct(sorted(buckets[k]), 99) for k in sorted(buckets)]
    wall, cpu = produced(rec)
    return {
        "metrics": read_metrics(rec["metrics"]),
        "scenario": rec["scenario"],
        "fetch_wait": rec.get("fetch_wait", ""),
        "rate": rec["rate"],
        "count": rec["count"],
        "decisions": n,
        "send_rate": send_rate,
        "decide_rate": decide_rate,
        "p50": pct(lat, 50),
        "p95": pct(lat, 95),
        "p99": pct(lat, 99),
        "p999": pct(lat, 99.9),
        "max": lat[-1] if lat else float("nan"),
        "p99_last_third": pct(tail, 99),
        "windows": windows,
        "acked": rec.get("acked", rec["count"]),
        "over_50": sum(1 for x in lat if x >= 50),
        "steady_n": len(lat),
        "p99_all": pct(all_lat, 99),
        "max_all": all_lat[-1] if all_lat else float("nan"),
        "degraded": degraded,
        "by_decision": by_decision,
        "producer_wall": wall,
        "producer_cpu": cpu,
        "fluxo_cpu": rec["fluxo_cpu_s"],
        "tansu_cpu": rec["tansu_cpu_s"],
        "load": f'{rec["load_before"]} → {rec["load_after"]}',
        "produce_log": rec["produce_log"],
    }


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    records = []
    with open(sys.argv[1]) as f:
        for line in f:
            if line.strip():
                records.append(json.loads(line))

    risk = [risk_row(r) for r in records if r["kind"] == "risk"]
    # Metrics are cumulative per instance: diff each run against the previous one of its instance.
    last = {}
    for r in risk:
        instance = r["scenario"].split()[0]
        before = last.get(instance, {})
        r["checkpoints"] = checkpoint_note(r["metrics"], before, "risk-scoring")
        r["sla_breaches"] = metric_delta(r["metrics"], before, "fluxo_risk_sla_breaches_total")
        r["validator_unavailable"] = metric_delta(r["metrics"], before, "fluxo_validator_unavailable_total")
        r["validator_calls"] = metric_delta(r["metrics"], before, "fluxo_validator_calls_total")
        last[instance] = r["metrics"]
    if risk:
        print("### Risk scoring latency (event time → decision)\n")
        print(f"Latency columns p50 … max and ≥ 50 ms are over the steady state (transactions stamped "
              f"{STEADY_AFTER_MS} ms or more after the run's first one); `p99 all` / `max all` include the "
              f"producer's first second.\n")
        print("| scenario | fetch_wait_max | target rate /s | transactions | decisions | producer sent /s "
              "| decisions /s | p50 ms | p95 ms | p99 ms | p99.9 ms | max ms | ≥ 50 ms | p99 all | max all | degraded "
              "| fluxo CPU s | tansu CPU s | producer CPU s | load (1/5/15 min) before → after |")
        print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
        for r in risk:
            print(f'| {r["scenario"]} | {r["fetch_wait"]} | {r["rate"]} | {r["count"]} | {r["decisions"]} '
                  f'| {r["send_rate"]:.0f} | {r["decide_rate"]:.0f} | {r["p50"]} | {r["p95"]} | {r["p99"]} '
                  f'| {r["p999"]} | {r["max"]} | {r["over_50"]} / {r["steady_n"]} | {r["p99_all"]} | {r["max_all"]} '
                  f'| {r["degraded"]} | {r["fluxo_cpu"]:.1f} '
                  f'| {r["tansu_cpu"]:.1f} | {r["producer_cpu"]:.1f} | {r["load"]} |')
        print()
        for r in risk:
            mix = ", ".join(f"{k} {v}" for k, v in sorted(r["by_decision"].items()))
            print(f'- {r["scenario"]} @ {r["rate"]}/s: {r["acked"]} of {r["count"]} acknowledged by the broker; '
                  f'p99 per 5 s [{", ".join(str(w) for w in r["windows"])}] ms; '
                  f'decisions {mix}; SLA breaches {r["sla_breaches"]:.0f}; validator calls '
                  f'{r["validator_calls"]:.0f}, unavailable {r["validator_unavailable"]:.0f}; '
                  f'{r["checkpoints"]}; producer: "{r["produce_log"]}"')
        print()

    thr = [r for r in records if r["kind"] == "throughput"]
    if thr:
        print("### Throughput end to end (flat-out producer → every record checkpointed)\n")
        print("| scenario | fetch_wait_max | records acknowledged | producer s (records/s) | processor | s until all checkpointed "
              "| records/s end to end | fluxo CPU s | tansu CPU s | producer CPU s | load before → after |")
        print("|---|---|--:|--:|---|--:|--:|--:|--:|--:|---|")
        for r in thr:
            wall, cpu = produced(r)
            acked = r.get("acked", r["count"])
            for proc, ms in r["done_ms"].items():
                secs = ms / 1000
                done = f"{secs:.1f} | {acked / secs:.0f}" if ms > 0 else "not reached | –"
                print(f'| {r["scenario"]} | {r.get("fetch_wait", "")} | {acked} of {r["count"]} '
                      f'| {wall:.1f} ({acked / wall:.0f}) | {proc} | {done} '
                      f'| {r["fluxo_cpu_s"]:.1f} | {r["tansu_cpu_s"]:.1f} | {cpu:.1f} '
                      f'| {r["load_before"]} → {r["load_after"]} |')
        print()
        for r in thr:
            m = read_metrics(r.get("metrics", ""))
            notes = "; ".join(checkpoint_note(m, {}, p) for p in r["done_ms"])
            print(f'- {r["scenario"]}: producer: "{r["produce_log"]}"; CPU per record: fluxo '
                  f'{r["fluxo_cpu_s"] / r["count"] * 1e6:.0f} µs, tansu {r["tansu_cpu_s"] / r["count"] * 1e6:.0f} µs; '
                  f'{notes}')
        print()

    inst = [r for r in records if r["kind"] == "instance"]
    if inst:
        print("### Processes over each whole instance (start to SIGTERM)\n")
        print("| instance | fetch_wait_max | ready after s | fluxo CPU s | fluxo peak RSS MiB | tansu CPU s "
              "| tansu peak RSS MiB | exit |")
        print("|---|---|--:|--:|--:|--:|--:|--:|")
        for r in inst:
            print(f'| {r["scenario"]} | {r["fetch_wait"]} | {r["startup_s"]} | {r["fluxo_cpu_s"]} '
                  f'| {r["fluxo_hwm_mib"]} | {r["tansu_cpu_s"]} | {r["tansu_hwm_mib"]} | {r["exit"]} |')
        print()


if __name__ == "__main__":
    main()
