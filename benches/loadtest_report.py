#!/usr/bin/env python3
"""Markdown report (stdout) and one SVG per scenario of benches/loadtest.sh.

Usage: loadtest_report.py LT_DIR/results.jsonl > LT_DIR/report.md

Reads the phases benches/loadtest.sh recorded, the /metrics + /proc samples of each scenario
(benches/loadtest_sample.py) and the latency taps (benches/loadtest.rs). The SVGs (throughput
per processor, consumer lag, latency p50/p99 per second, fluxo and broker CPU, fluxo RSS over
time) need matplotlib, which loadtest.sh installs into a venv; without it the report says so and
skips them. Runs with the system python3 too (then without plots).
"""

import json
import os
import sys


def load_jsonl(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                if line.strip():
                    out.append(json.loads(line))
    except OSError:
        pass
    return out


def rate(records, first_ms, done_ms):
    if first_ms <= 0 or done_ms <= first_ms:
        return None, None
    secs = (done_ms - first_ms) / 1000
    return records / secs, secs


def fmt(x, spec=".0f"):
    return "–" if x is None else format(x, spec)


def metric_total(path, prefix):
    total = 0.0
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    total += float(line.rsplit(" ", 1)[1])
    except (OSError, ValueError):
        pass
    return total


def plot(scenario, samples, taps, run_t0, svg):
    import matplotlib
    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
    t = [(s["t_ms"] - run_t0) / 1000 for s in samples]
    procs = sorted({p for s in samples for p in (s.get("processors") or {})})
    ax_tp, ax_lag, ax_lat, ax_cpu = axes
    for p in procs:
        xs, tp, lag = [], [], []
        for prev, cur, x in zip(samples, samples[1:], t[1:]):
            a = (prev.get("processors") or {}).get(p, {})
            b = (cur.get("processors") or {}).get(p, {})
            dt = (cur["t_ms"] - prev["t_ms"]) / 1000
            if dt > 0 and "in" in b:
                xs.append(x)
                tp.append((b.get("in", 0) - a.get("in", 0)) / dt)
                lag.append(b.get("lag", float("nan")))
        if any(tp):
            ax_tp.plot(xs, tp, label=p)
            ax_lag.plot(xs, lag, label=p)
    ax_tp.set_ylabel("records in /s")
    ax_tp.set_title(f"{scenario}: fluxo run (t = 0 at its start)")
    if ax_tp.get_legend_handles_labels()[0]:
        ax_tp.legend(loc="upper right", fontsize="small")
    ax_lag.set_ylabel("fluxo_consumer_lag_records")
    if not any("lag" in row for s in samples for row in (s.get("processors") or {}).values()):
        ax_lag.text(0.5, 0.5, "fluxo did not export fluxo_consumer_lag_records in this run",
                    ha="center", va="center", transform=ax_lag.transAxes)
    if ax_lag.get_legend_handles_labels()[0]:
        ax_lag.legend(loc="upper right", fontsize="small")
    for label, tap in taps:
        series = tap.get("series", [])
        xs = [(s["t"] * 1000 + 500 - run_t0) / 1000 for s in series]
        ax_lat.plot(xs, [s["p50"] for s in series], label=f"{label} p50")
        ax_lat.plot(xs, [s["p99"] for s in series], label=f"{label} p99", linestyle="--")
        if any("visible_p99" in s for s in series):
            ax_lat.plot(xs, [s.get("visible_p99", float("nan")) for s in series],
                        label=f"{label} visible p99", linestyle=":")
    if taps:
        ax_lat.set_yscale("log")
        ax_lat.legend(loc="upper right", fontsize="small")
    ax_lat.set_ylabel("latency ms (per second\nof output time)")
    for key, label, color in (("fluxo_cpu_s", "fluxo CPU %", "tab:red"),
                              ("broker_cpu_s", "broker CPU %", "tab:gray")):
        cpu_x, cpu = [], []
        for prev, cur, x in zip(samples, samples[1:], t[1:]):
            dt = (cur["t_ms"] - prev["t_ms"]) / 1000
            if dt > 0 and cur.get(key) is not None and prev.get(key) is not None:
                cpu_x.append(x)
                cpu.append((cur[key] - prev[key]) / dt * 100)
        if cpu:
            ax_cpu.plot(cpu_x, cpu, label=label, color=color)
    ax_cpu.set_ylabel("CPU % (100 = one core)")
    ax_cpu.legend(loc="upper left", fontsize="small")
    ax_rss = ax_cpu.twinx()
    ax_rss.plot(t, [s.get("fluxo_rss_mib") or 0 for s in samples], color="tab:blue", label="fluxo RSS MiB")
    ax_rss.set_ylabel("fluxo RSS MiB")
    ax_cpu.set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(svg)
    plt.close(fig)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    out_dir = os.path.dirname(os.path.abspath(path))
    records = load_jsonl(path)
    run = next((r for r in records if r["kind"] == "run"), {})
    print("# fluxo load test\n")
    print(f'- date: {run.get("date", "?")}; machine: {run.get("host", "?")}')
    print(f'- command: `{run.get("command", "?")}`; `uptime` at the start: {run.get("uptime", "?").strip()}')
    print(f'- fluxo: {run.get("fluxo", "?").strip()}')
    settings = [r for r in records if "guarantee" in r and r["kind"] != "floor"]
    brokers = sorted({r["broker"] for r in records if r.get("broker")})
    print(f'- broker: {", ".join(brokers) or "Apache Kafka"}, one node (KRaft), started by `fluxo up` '
          "(scripts/kafka) fresh for every instance and warmed up with "
          f'{run.get("warmup") or "no"} (rate:count) paced records through the passthrough first; it '
          "answers a fetch as soon as data arrives (fetch_wait_max only bounds an idle fetch)")

    def distinct(key):
        return ", ".join(sorted({r[key] if isinstance(r[key], str) else json.dumps(r[key])
                                 for r in settings if key in r})) or "?"
    print(f'- processing guarantee: {distinct("guarantee")}; fetch_wait_max {distinct("fetch_wait")}; '
          f'idempotent producer {distinct("idempotent_producer")}; assignment {distinct("assignment")}; '
          f'checkpoint_interval {distinct("checkpoint_interval")}. Under exactly_once every checkpoint '
          "is a Kafka transaction and consumers read committed outputs only; the passthrough is "
          "never transactional\n")

    pts = {r["scenario"]: r for r in records if r["kind"] == "passthrough"}
    drains = [r for r in records if r["kind"] == "drain"]
    if drains:
        print("## Throughput: fluxo against the raw rdkafka passthrough\n")
        print("Same broker, same simulated records, same client settings (the passthrough without "
              "transactions), one after the other: "
              "`fluxo produce --simulate` sends the records flat out while the passthrough (`pt-<input>` → "
              "`pt-<input>.out`), then fluxo (`<input>` → its processors), runs. End to end = records / "
              "(last output acknowledged (passthrough) or last input checkpointed, under exactly_once committed (fluxo) "
              "− producer start); "
              "from first read = the same from the first record read.\n")
        print("| scenario | guarantee | records | producer records/s | passthrough end to end /s (s) | processor "
              "| fluxo end to end /s (s) | **fluxo / passthrough** | fluxo from first read /s | passthrough from first read /s "
              "| fluxo CPU s | passthrough CPU s | broker CPU s (fluxo / passthrough phase) "
              "| load 1/5/15: passthrough phase / fluxo phase |")
        print("|---|---|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|---|")
        for d in drains:
            pt = pts.get(d["scenario"], {})
            ptr = pt.get("result") or {}
            pt_n = ptr.get("records", 0)
            pt_e2e, pt_secs = rate(pt_n, pt.get("producer_t0_ms", 0), ptr.get("done_ms", 0))
            pt_read, _ = rate(pt_n, ptr.get("first_in_ms", 0), ptr.get("done_ms", 0))
            wall = float(d["produce"].split()[0])
            for proc, times in d["processors"].items():
                r, secs = rate(d["records"], d["producer_t0_ms"], times["done_ms"])
                r_read, _ = rate(d["records"], times["first_in_ms"], times["done_ms"])
                ratio = f"**{r / pt_e2e * 100:.0f}%**" if r and pt_e2e else "–"
                print(f'| {d["scenario"]} | {d.get("guarantee", "?")} | {d["records"]} | {d["records"] / wall:.0f} '
                      f'| {fmt(pt_e2e)} ({fmt(pt_secs, ".2f")}) | {proc} | {fmt(r)} ({fmt(secs, ".2f")}) '
                      f'| {ratio} | {fmt(r_read)} | {fmt(pt_read)} | {d["fluxo_cpu_s"]:.1f} | {ptr.get("cpu_s", 0):.1f} '
                      f'| {d.get("broker_cpu_s", 0):.1f} / {pt.get("broker_cpu_s", 0):.1f} | {pt.get("load", "")} ; {d["load"]} |')
        print()
        for d in drains:
            ptr = (pts.get(d["scenario"], {}).get("result") or {})
            print(f'- {d["scenario"]}: `fluxo produce` into fluxo\'s input: "{d["produce_log"]}"; into the passthrough\'s: '
                  f'"{pts.get(d["scenario"], {}).get("produce_log", "")}"; CPU per record: fluxo '
                  f'{d["fluxo_cpu_s"] / max(d["records"], 1) * 1e6:.0f} µs, passthrough '
                  f'{ptr.get("cpu_s", 0) / max(d["records"], 1) * 1e6:.0f} µs; passthrough peak RSS {ptr.get("hwm_mib", 0):.0f} MiB')
        print()

    lives = [r for r in records if r["kind"] == "live"]
    floors = [r for r in records if r["kind"] == "floor"]
    if lives or floors:
        print("## Risk decision latency: transaction event time → decision (HDR histograms)\n")
        print("The tap runs while the transactions are produced. It reads transactions and decisions "
              "`read_committed`, joins every decision to its transaction (the engine's `fluxo-id` header) and "
              "records two latencies from the transaction's Kafka timestamp (stamped by `fluxo produce --rate` "
              "with its event time): **visible** = when the tap received the decision, i.e. when a "
              "`read_committed` consumer downstream could have it (under exactly_once: once the checkpoint's "
              "transaction committed); **produced** = the decision's Kafka timestamp (when fluxo produced it, "
              "before any commit). All transactions of the run count, including its first second, which also "
              "measures the load generator's start (`fluxo produce` stamps its first records before its "
              "producer is connected): the *after 1st s* columns leave that second out. The rates "
              "of a scenario run one after the other on the same instance. `passthrough` rows: fluxo not "
              "running, the raw passthrough alone forwards the paced transactions to another topic, measured "
              "the same way: the floor the broker and client settings give.\n")
        print("| scenario | guarantee | target /s | sent /s | outputs | visible p50 ms | p90 | p95 | **p99** | p99.9 | max "
              "| visible p99 after 1st s | produced p50 | p99 | p99 after 1st s | max | degraded | SLA breaches (> 2 s) "
              "| fluxo CPU s | broker CPU s | load 1/5/15 before / after |")
        print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
        for r in lives + floors:
            try:
                with open(r["tap"]) as f:
                    tap = json.load(f)
            except (OSError, ValueError):
                tap = {}
            lat = next(iter(tap.get("latency_ms", {}).values()), {})
            vis = next(iter(tap.get("visible_ms", {}).values()), {})
            steady_lat = next(iter(tap.get("steady_latency_ms", {}).values()), {})
            steady_vis = next(iter(tap.get("steady_visible_ms", {}).values()), {})
            wall = float(r["produce"].split()[0])
            sent = r["acked"] / wall if wall > 0 else 0
            if r["kind"] == "live":
                def degraded(path):
                    return sum(metric_total(path, f'fluxo_risk_decisions_total{{decision="{d}",degraded="true"}}')
                               for d in ("APPROVE", "REVIEW", "REJECT"))
                deg = f'{degraded(r["metrics"]) - degraded(r["metrics_before"]):.0f}'
                breaches = (metric_total(r["metrics"], "fluxo_risk_sla_breaches_total")
                            - metric_total(r["metrics_before"], "fluxo_risk_sla_breaches_total"))
                breaches = f"{breaches:.0f}"
                fluxo_cpu = f'{r["fluxo_cpu_s"]:.1f}'
                guarantee = r.get("guarantee", "?")
            else:
                deg = breaches = fluxo_cpu = guarantee = "–"
            joined = f'{tap.get("joined", 0)}' + ("" if tap.get("complete") else f' of {r["acked"]} (incomplete)')
            print(f'| {r["scenario"]} | {guarantee} | {r["rate"]} | {sent:.0f} | {joined} | {vis.get("p50", "–")} '
                  f'| {vis.get("p90", "–")} | {vis.get("p95", "–")} | **{vis.get("p99", "–")}** | {vis.get("p999", "–")} '
                  f'| {vis.get("max", "–")} | {steady_vis.get("p99", "–")} | {lat.get("p50", "–")} | {lat.get("p99", "–")} '
                  f'| {steady_lat.get("p99", "–")} | {lat.get("max", "–")} '
                  f'| {deg} | {breaches} | {fluxo_cpu} | {r.get("broker_cpu_s", 0):.1f} | {r["load"]} |')
        print()
        for r in lives + floors:
            try:
                with open(r["tap"]) as f:
                    tap = json.load(f)
            except (OSError, ValueError):
                continue
            for key, what in (("visible_hgrm", "visible"), ("hgrm", "produced")):
                for proc, hgrm in tap.get(key, {}).items():
                    print(f'<details><summary>{r["scenario"]} @ {r["rate"]}/s: {proc}, {what}: percentile '
                          'distribution (ms)</summary>\n')
                    print("```\n" + hgrm + "```\n</details>\n")

    inst = [r for r in records if r["kind"] == "instance"]
    if inst:
        print("## Processes\n")
        print("Broker CPU: the Kafka JVM's CPU seconds while `fluxo run` ran. Log warnings: lines at WARN "
              "or ERROR in `fluxo run`'s log (the `log` path in results.jsonl).\n")
        print("| scenario | guarantee | fluxo CPU s | fluxo mean CPU % (busy samples) | fluxo RSS MiB (peak) "
              "| broker CPU s | broker peak RSS MiB | log warnings | exit |")
        print("|---|---|--:|--:|--:|--:|--:|--:|--:|")
        for r in inst:
            samples = load_jsonl(r["samples"])
            busy = []
            for a, b in zip(samples, samples[1:]):
                dt = (b["t_ms"] - a["t_ms"]) / 1000
                if dt > 0 and a.get("fluxo_cpu_s") is not None and b.get("fluxo_cpu_s") is not None:
                    pct = (b["fluxo_cpu_s"] - a["fluxo_cpu_s"]) / dt * 100
                    if pct > 5:
                        busy.append(pct)
            mean = sum(busy) / len(busy) if busy else 0
            print(f'| {r["scenario"]} | {r.get("guarantee", "?")} | {r["fluxo_cpu_s"]} | {mean:.0f} | {r["fluxo_hwm_mib"]} '
                  f'| {r.get("broker_cpu_s", "–")} | {r.get("broker_hwm_mib", "–")} | {r.get("log_warnings", "–")} '
                  f'| {r["exit"]} |')
        print()
        print("## Over time\n")
        lagless = [r["scenario"] for r in inst
                   if not any("lag" in row for s in load_jsonl(r["samples"])
                              for row in (s.get("processors") or {}).values())]
        if lagless:
            print(f"fluxo_consumer_lag_records was never exported during {', '.join(lagless)} "
                  "(the lag panel is empty there).\n")
        try:
            import matplotlib  # noqa: F401
            have_mpl = True
        except ImportError:
            have_mpl = False
            print("(matplotlib not available: no plots)\n")
        for r in inst:
            samples = load_jsonl(r["samples"])
            taps = []
            for lv in lives:
                if lv["scenario"] == r["scenario"]:
                    try:
                        with open(lv["tap"]) as f:
                            taps.append((f'{lv["rate"]}/s', json.load(f)))
                    except OSError:
                        pass
            if have_mpl and samples:
                svg = os.path.join(out_dir, f'{r["scenario"]}.svg')
                plot(r["scenario"], samples, taps, r["run_t0_ms"], svg)
                print(f'![{r["scenario"]}]({os.path.basename(svg)})\n')


if __name__ == "__main__":
    main()
