#!/usr/bin/env python3
"""Plot throughput.sh results: records/s, CPU-seconds per million records (the processing
process, with the broker's stacked above it) and peak RSS, one bar per engine, grouped by
scenario, one row of panels per guarantee.

Usage: benches/peers/plot.py OUT.svg RESULTS.jsonl [RESULTS.jsonl ...]

Each RESULTS.jsonl is a throughput.sh run (its first line names the guarantee). When several
runs measured the same (guarantee, scenario, engine), the file given last wins: that is how a
rerun of one engine (ENGINES=flink) replaces its row, as in benches/README.md's tables.
"""
import json
import sys

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen before pyplot loads)

ENGINES = ["passthrough", "fluxo", "kafka-streams", "flink"]
COLOURS = {"passthrough": "#9e9e9e", "fluxo": "#1565c0", "kafka-streams": "#ef6c00", "flink": "#6a1b9a"}


def load(paths):
    """{guarantee: {scenario: {engine: row}}}, later files overriding earlier ones."""
    table = {}
    for path in paths:
        lines = [json.loads(l) for l in open(path) if l.strip()]
        guarantee = lines[0]["guarantee"]
        for row in lines[1:]:
            if "error" in row or "scenario" not in row:
                continue
            table.setdefault(guarantee, {}).setdefault(row["scenario"], {})[row["engine"]] = row
    return table


def bars(ax, by_scenario, value, label, fmt, stacked=None):
    """One group of bars per scenario, one bar per engine present; `stacked` adds a lighter
    segment above each bar (the broker's CPU); `fmt` formats the value printed on each bar."""
    scenarios = list(by_scenario)
    width = 0.8 / len(ENGINES)
    for i, engine in enumerate(ENGINES):
        xs, ys, tops = [], [], []
        for j, s in enumerate(scenarios):
            row = by_scenario[s].get(engine)
            if row is None:
                continue
            xs.append(j + (i - (len(ENGINES) - 1) / 2) * width)
            ys.append(value(row))
            tops.append(stacked(row) if stacked else 0)
        if not xs:
            continue
        ax.bar(xs, ys, width, color=COLOURS[engine], label=engine)
        if stacked:
            ax.bar(xs, tops, width, bottom=ys, color=COLOURS[engine], alpha=0.35)
        for x, y, t in zip(xs, ys, tops):
            ax.annotate(format(y, fmt), (x, y + t), ha="center",
                        va="bottom", fontsize=7)
    ax.set_xticks(range(len(scenarios)), scenarios)
    ax.set_title(label, fontsize=9)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    table = load(sys.argv[2:])
    guarantees = [g for g in ("exactly_once", "at_least_once") if g in table]
    fig, axes = plt.subplots(len(guarantees), 3, figsize=(13, 3.6 * len(guarantees)), squeeze=False)
    for row_axes, g in zip(axes, guarantees):
        by_scenario = table[g]
        bars(row_axes[0], by_scenario, lambda r: r["records_per_s"], f"{g}: records/s (higher is better)", ",.0f")
        bars(row_axes[1], by_scenario, lambda r: r["cpu_s_per_M"],
             f"{g}: CPU-s per M records, process (+ broker, light)", ".1f",
             stacked=lambda r: r["broker_cpu_s_per_M"])
        bars(row_axes[2], by_scenario, lambda r: r["hwm_mib"] or 0, f"{g}: peak RSS MiB", ",.0f")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(sys.argv[1])


if __name__ == "__main__":
    main()
