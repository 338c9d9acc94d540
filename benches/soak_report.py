#!/usr/bin/env python3
"""Summary and plot of a benches/soak.sh run (standard library only: the SVG is written by hand).

Usage: soak_report.py SOAK_DIR

Reads SOAK_DIR/samples.csv (benches/soak_sample.py), meta.json, run.log, groups-end.txt and
state-tables.txt (benches/redb-stats), when present;
writes SOAK_DIR/summary.md, summary.json and soak.svg.

The RSS slope is a least-squares line through the samples of the last 20 minutes of the load
(or, for a run shorter than 30 minutes, its last two thirds, so the start-up is left out),
in MiB per hour; the same slope is given for RssAnon (heap) and for the state store's file,
which grows with the state (consolidation's days and entry ids) by design.
"""

import csv
import json
import os
import re
import sys
from collections import OrderedDict

PROCESSORS = ["price-change", "below-average", "risk-scoring", "daily-consolidation"]
COLORS = {"price-change": "#1f77b4", "below-average": "#ff7f0e", "risk-scoring": "#2ca02c",
          "daily-consolidation": "#d62728"}


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def slope(points):
    """Least-squares slope (y per x) and intercept of [(x, y)], or (None, None)."""
    pts = [(x, y) for x, y in points if x is not None and y is not None]
    if len(pts) < 3:
        return None, None
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx == 0:
        return None, None
    b = sum((x - mx) * (y - my) for x, y in pts) / sxx
    return b, my - b * mx


def log_findings(path):
    """WARN/ERROR lines of fluxo's JSON log, grouped by level and message."""
    groups = OrderedDict()
    total = 0
    if not os.path.exists(path):
        return total, []
    with open(path, errors="replace") as f:
        for line in f:
            level = msg = ts = None
            if line.startswith("{"):
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                level, msg, ts = rec.get("level"), rec.get("message", ""), rec.get("timestamp", "")
            elif re.match(r"^fluxo: (error|warning)", line):
                level, msg, ts = "ERROR" if "error" in line[:13] else "WARN", line.strip(), ""
            if level not in ("WARN", "ERROR"):
                continue
            total += 1
            # Numbers vary between otherwise equal messages (offsets, counts): group without them.
            key = (level, re.sub(r"\d+", "N", msg)[:160])
            g = groups.setdefault(key, {"level": level, "message": msg[:240], "count": 0,
                                        "first": ts, "last": ts})
            g["count"] += 1
            g["last"] = ts
    return total, list(groups.values())


def groups_lag(path):
    """Sum of LAG per consumer group from ConsumerGroupCommand --describe, or {}."""
    out = {}
    if not os.path.exists(path):
        return out
    header = None
    with open(path) as f:
        for line in f:
            cols = line.split()
            if not cols:
                continue
            if cols[0] == "GROUP":
                header = cols
                continue
            if header and len(cols) >= len(header) - 3 and "LAG" in header:
                lag = cols[header.index("LAG")]
                g = out.setdefault(cols[0], 0)
                out[cols[0]] = g + (int(lag) if lag.isdigit() else 0)
    return out


# ---------------------------------------------------------------- SVG
def svg_plot(rows, meta, path):
    W, PH, L, R, T, GAP = 960, 190, 70, 200, 50, 40
    panels = [
        ("Memory (MiB)", [("rss_mib", "fluxo RSS", "#000000"), ("rss_anon_mib", "fluxo RssAnon (heap)", "#1f77b4"),
                          ("state_mib", "state file (redb)", "#9467bd")]),
        ("Open file descriptors / threads", [("fds", "open fds", "#000000"), ("threads", "threads", "#8c564b")]),
        ("Consumer lag (records, sum over partitions)",
         [(f"lag_{p}", p, COLORS[p]) for p in PROCESSORS]),
        ("Mean checkpoint duration per interval (ms)",
         [(f"ckpt_ms_{p}", p, COLORS[p]) for p in PROCESSORS]),
        ("CPU % (of one core)", [("cpu_pct", "fluxo", "#000000"), ("broker_cpu_pct", "Kafka broker", "#7f7f7f")]),
    ]
    H = T + len(panels) * (PH + GAP) + 30
    xs = [num(r["elapsed_s"]) / 60 for r in rows]
    xmax = max(xs) if xs else 1
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{L}" y="22" font-size="14" font-weight="bold">fluxo soak: all four processors, '
           f'{meta.get("rates", {}).get("prices", "?")} quotes/s + {meta.get("rates", {}).get("transactions", "?")} payments/s + '
           f'{meta.get("rates", {}).get("ledger", "?")} ledger entries/s, sampled every {meta.get("sample_s", "?")} s</text>',
           f'<text x="{L}" y="38" fill="#555">{esc(meta.get("start", ""))} .. {esc(meta.get("end", ""))}; '
           f'{esc(meta.get("fluxo", ""))}; {esc(meta.get("host", ""))}</text>']
    pw = W - L - R
    load_end = None
    if meta.get("soak_seconds"):
        load_end = meta["soak_seconds"] / 60
    for i, (title, series) in enumerate(panels):
        y0 = T + i * (PH + GAP) + 10
        vals = [num(r.get(k)) for k, _, _ in series for r in rows]
        vals = [v for v in vals if v is not None]
        ymax = nice(max(vals) if vals else 1)
        out.append(f'<text x="{L}" y="{y0 - 4}" font-weight="bold">{esc(title)}</text>')
        out.append(f'<rect x="{L}" y="{y0}" width="{pw}" height="{PH}" fill="none" stroke="#999"/>')
        for k in range(5):
            yv = ymax * k / 4
            yy = y0 + PH - PH * k / 4
            out.append(f'<line x1="{L}" x2="{L + pw}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#eee"/>')
            out.append(f'<text x="{L - 5}" y="{yy + 4:.1f}" text-anchor="end">{fmt(yv)}</text>')
        for k in range(0, int(xmax) + 1, 5 if xmax > 20 else 2 if xmax > 8 else 1):
            xx = L + pw * k / xmax
            out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{y0}" y2="{y0 + PH}" stroke="#f3f3f3"/>')
            out.append(f'<text x="{xx:.1f}" y="{y0 + PH + 13}" text-anchor="middle">{k}</text>')
        if load_end is not None and load_end <= xmax:
            xx = L + pw * load_end / xmax
            out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{y0}" y2="{y0 + PH}" stroke="#aaa" stroke-dasharray="4,3"/>')
        for j, (key, label, color) in enumerate(series):
            pts = []
            for x, r in zip(xs, rows):
                v = num(r.get(key))
                if v is None:
                    continue
                pts.append(f"{L + pw * x / xmax:.1f},{y0 + PH - PH * min(v, ymax) / ymax:.1f}")
            if pts:
                out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.4" points="{" ".join(pts)}"/>')
            ly = y0 + 14 + j * 16
            out.append(f'<line x1="{L + pw + 12}" x2="{L + pw + 32}" y1="{ly - 4}" y2="{ly - 4}" stroke="{color}" stroke-width="2"/>')
            out.append(f'<text x="{L + pw + 37}" y="{ly}">{esc(label)}</text>')
    out.append(f'<text x="{L + pw / 2}" y="{H - 8}" text-anchor="middle">minutes since fluxo had its partitions '
               f'(dashed: the producers stop)</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def nice(v):
    if v <= 0:
        return 1
    import math
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 1.2, 1.6, 2, 2.4, 3.2, 4, 6, 8, 10):
        if v <= m * e:
            return m * e
    return 10 * e


def fmt(v):
    return f"{v:.0f}" if v >= 10 or v == 0 else f"{v:.2g}"


# ---------------------------------------------------------------- summary
def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    with open(os.path.join(d, "samples.csv")) as f:
        rows = list(csv.DictReader(f))
    meta = {}
    if os.path.exists(os.path.join(d, "meta.json")):
        with open(os.path.join(d, "meta.json")) as f:
            meta = json.load(f)
    if not rows:
        sys.exit("soak_report: no samples")
    el = [num(r["elapsed_s"]) for r in rows]
    soak_s = meta.get("soak_seconds") or el[-1]
    load_rows = [r for r in rows if num(r["elapsed_s"]) <= soak_s + 1]
    win = 1200 if soak_s >= 1800 else soak_s * 2 / 3
    tail = [r for r in load_rows if num(r["elapsed_s"]) >= soak_s - win]

    def col(name, rs=rows):
        return [num(r.get(name)) for r in rs if num(r.get(name)) is not None]

    def per_h(name):
        b, _ = slope([(num(r["elapsed_s"]), num(r.get(name))) for r in tail])
        return None if b is None else b * 3600

    rss = col("rss_mib")
    s = OrderedDict()
    s["samples"] = len(rows)
    s["duration_s"] = el[-1]
    s["rss_first_mib"] = rss[0]
    s["rss_last_mib"] = rss[-1]
    s["rss_max_mib"] = max(rss)
    s["rss_max_at_min"] = round(num(rows[[num(r["rss_mib"]) for r in rows].index(max(rss))]["elapsed_s"]) / 60, 1)
    s["hwm_last_mib"] = col("hwm_mib")[-1]
    s["slope_window_s"] = [round(soak_s - win), soak_s]
    s["rss_slope_mib_per_h"] = per_h("rss_mib")
    s["rss_anon_slope_mib_per_h"] = per_h("rss_anon_mib")
    s["state_file_slope_mib_per_h"] = per_h("state_mib")
    s["rss_window_first_last_mib"] = [num(tail[0]["rss_mib"]), num(tail[-1]["rss_mib"])] if tail else None
    s["rss_window_min_max_mib"] = [min(col("rss_mib", tail)), max(col("rss_mib", tail))] if tail else None
    st = col("state_mib")
    s["state_file_first_last_mib"] = [st[0], st[-1]] if st else None
    fds = col("fds")
    s["fds_min_max"] = [min(fds), max(fds)]
    s["fds_first_last"] = [fds[0], fds[-1]]
    th = col("threads")
    s["threads_min_max"] = [min(th), max(th)] if th else None
    cpu = col("cpu_pct", load_rows)
    s["fluxo_cpu_pct_mean"] = sum(cpu) / len(cpu) if cpu else None
    s["fluxo_cpu_s"] = col("cpu_s")[-1]
    bc = col("broker_cpu_pct", load_rows)
    s["broker_cpu_pct_mean"] = sum(bc) / len(bc) if bc else None
    br = col("broker_rss_mib")
    s["broker_rss_first_last_max_mib"] = [br[0], br[-1], max(br)] if br else None
    ld = col("load1")
    s["load1_min_mean_max"] = [min(ld), sum(ld) / len(ld), max(ld)]
    s["lag"] = OrderedDict()
    for p in PROCESSORS:
        lag = col(f"lag_{p}")
        s["lag"][p] = {"max": max(lag) if lag else None,
                       "mean": (sum(lag) / len(lag)) if lag else None,
                       "last": lag[-1] if lag else None}
    s["records"] = OrderedDict()
    for p in PROCESSORS:
        s["records"][p] = {k: (col(f"{k}_{p}")[-1] if col(f"{k}_{p}") else 0) for k in ("in", "out", "dlq")}
    s["checkpoint_ms_first_last_5min"] = OrderedDict()
    for p in PROCESSORS:
        first = [num(r.get(f"ckpt_ms_{p}")) for r in load_rows if num(r["elapsed_s"]) <= 300]
        last = [num(r.get(f"ckpt_ms_{p}")) for r in load_rows if num(r["elapsed_s"]) > soak_s - 300]
        first = [v for v in first if v is not None]
        last = [v for v in last if v is not None]
        s["checkpoint_ms_first_last_5min"][p] = [sum(first) / len(first) if first else None,
                                                 sum(last) / len(last) if last else None]
    # RSS every 5 minutes of the load: the shape the slope alone does not give.
    s["rss_every_5min_mib"] = OrderedDict()
    for m in range(0, int(soak_s // 60) + 1, 5):
        near = min(rows, key=lambda r: abs(num(r["elapsed_s"]) - 60 * m))
        s["rss_every_5min_mib"][m] = num(near["rss_mib"])
    s["produced"] = meta.get("produced")
    # Final counts from the last /metrics snapshot (after the drain), when there is one.
    end = os.path.join(d, "metrics-end.txt")
    if os.path.exists(end):
        names = {"fluxo_records_in_total": "in", "fluxo_records_out_total": "out",
                 "fluxo_records_dead_lettered_total": "dlq"}
        final = {p: {"in": 0, "out": 0, "dlq": 0} for p in PROCESSORS}
        with open(end) as f:
            for line in f:
                m = re.match(r'^(\w+)\{[^}]*processor="([^"]+)"[^}]*\}\s+(\S+)$', line)
                if m and m.group(1) in names and m.group(2) in final:
                    final[m.group(2)][names[m.group(1)]] += float(m.group(3))
        s["records"] = final
    s["groups_end_lag"] = groups_lag(os.path.join(d, "groups-end.txt"))
    n_warn, findings = log_findings(os.path.join(d, "run.log"))
    s["log_warn_error_lines"] = n_warn
    s["log_findings"] = findings
    s["fluxo_exit"] = meta.get("fluxo_exit")
    s["fluxo_alive_at_end"] = meta.get("fluxo_alive_at_end")
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump({"meta": meta, "summary": s}, f, indent=1)

    def f1(v, unit=""):
        return "-" if v is None else f"{v:,.1f}{unit}"

    md = [f"# fluxo soak, {meta.get('start', '?')} .. {meta.get('end', '?')}", "",
          f"- command: `{meta.get('command', '?')}`",
          f"- fluxo: {meta.get('fluxo', '?')}; tree {meta.get('tree', '?')}",
          f"- host: {meta.get('host', '?')}; 1-min load average min/mean/max "
          f"{s['load1_min_mean_max'][0]:.1f} / {s['load1_min_mean_max'][1]:.1f} / {s['load1_min_mean_max'][2]:.1f}",
          f"- load: {meta.get('rates')} records/s for {soak_s} s, then {meta.get('drain_s', '?')} s of drain; "
          f"blacklist {meta.get('blacklist', '?')} entries; produced (acknowledged) {meta.get('produced')}",
          f"- samples: {s['samples']} every {meta.get('sample_s', '?')} s over {s['duration_s'] / 60:.1f} min", "",
          "| figure | value |", "|---|---|",
          f"| RSS first / last / max | {f1(s['rss_first_mib'])} / {f1(s['rss_last_mib'])} / {f1(s['rss_max_mib'])} MiB (max at {s['rss_max_at_min']} min; VmHWM {f1(s['hwm_last_mib'])}) |",
          f"| RSS over the slope window ({s['slope_window_s'][0]}-{s['slope_window_s'][1]} s): first / last, min / max | "
          f"{f1(s['rss_window_first_last_mib'][0])} / {f1(s['rss_window_first_last_mib'][1])}, "
          f"{f1(s['rss_window_min_max_mib'][0])} / {f1(s['rss_window_min_max_mib'][1])} MiB |",
          f"| RSS every 5 min of the load (min: MiB) | {', '.join(f'{k}: {v:.0f}' for k, v in s['rss_every_5min_mib'].items())} |",
          f"| RSS slope over that window (least squares) | {f1(s['rss_slope_mib_per_h'], ' MiB/h')} |",
          f"| RssAnon (heap) slope, same window | {f1(s['rss_anon_slope_mib_per_h'], ' MiB/h')} |",
          f"| state file (redb) first / last; slope | {f1(s['state_file_first_last_mib'][0])} / {f1(s['state_file_first_last_mib'][1])} MiB; {f1(s['state_file_slope_mib_per_h'], ' MiB/h')} |",
          f"| open fds min / max (first / last) | {s['fds_min_max'][0]:.0f} / {s['fds_min_max'][1]:.0f} ({s['fds_first_last'][0]:.0f} / {s['fds_first_last'][1]:.0f}) |",
          f"| threads min / max | {s['threads_min_max'][0]:.0f} / {s['threads_min_max'][1]:.0f} |",
          f"| fluxo CPU: mean over the load / total | {f1(s['fluxo_cpu_pct_mean'], ' %')} of a core / {f1(s['fluxo_cpu_s'], ' CPU-s')} |",
          f"| broker: mean CPU / RSS first, last, max | {f1(s['broker_cpu_pct_mean'], ' %')} / {', '.join(f1(v) for v in (s['broker_rss_first_last_max_mib'] or []))} MiB |",
          f"| WARN/ERROR lines in fluxo's log | {n_warn} |",
          f"| fluxo at the end | {'alive' if s['fluxo_alive_at_end'] else 'DEAD'}; exit after SIGTERM {s['fluxo_exit']} |",
          "", "Records: the last /metrics snapshot, after the drain (risk-scoring's input includes the blacklist).", "",
          "| processor | records in | out | dead-lettered | lag max | lag mean | lag at end | Kafka group lag at end | checkpoint ms, first / last 5 min |",
          "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for p in PROCESSORS:
        r, lg = s["records"][p], s["lag"][p]
        c = s["checkpoint_ms_first_last_5min"][p]
        md.append(f"| {p} | {r['in']:,.0f} | {r['out']:,.0f} | {r['dlq']:,.0f} | {f1(lg['max'])} | {f1(lg['mean'])} | "
                  f"{f1(lg['last'])} | {s['groups_end_lag'].get('fluxo-' + p, '-')} | {f1(c[0])} / {f1(c[1])} |")
    if findings:
        md += ["", "WARN/ERROR lines of fluxo's log, grouped:", "", "| level | count | first | last | message |",
               "|---|--:|---|---|---|"]
        for g in findings:
            md.append(f"| {g['level']} | {g['count']} | {g['first']} | {g['last']} | {g['message'].replace('|', '/')} |")
    tables = os.path.join(d, "state-tables.txt")
    if os.path.exists(tables):
        with open(tables) as f:
            md += ["", "The state file at the end, table by table (benches/redb-stats):", "", "```"] + \
                [l.rstrip() for l in f] + ["```"]
    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    svg_plot(rows, meta, os.path.join(d, "soak.svg"))
    print("\n".join(md))


if __name__ == "__main__":
    main()
