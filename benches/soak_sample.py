#!/usr/bin/env python3
"""Samples a running `fluxo run` every INTERVAL_S for benches/soak.sh (standard library only).

Usage: soak_sample.py METRICS_URL FLUXO_PID BROKER_PID STATE_FILE OUT.csv [INTERVAL_S]

Appends one CSV row per interval (header first): wall time, seconds since the sampler started,
fluxo's resident set from /proc/<pid>/status (VmRSS, and its split into RssAnon = heap and
stacks, RssFile = mapped files such as the binary), VmHWM, open file descriptors
(entries of /proc/<pid>/fd), threads, CPU seconds (user + system) and CPU % over the interval,
the state store's file size, the broker JVM's RSS and CPU %, the 1-minute load average, and per
processor the sums over partitions of fluxo_consumer_lag_records, fluxo_records_in_total,
fluxo_records_out_total and fluxo_records_dead_lettered_total from fluxo's /metrics (empty
when /metrics did not answer), and the mean checkpoint duration (ms) over the interval from
fluxo_checkpoint_duration_seconds. Stops on SIGTERM or when FLUXO_PID is gone.
"""

import csv
import os
import re
import signal
import sys
import time
import urllib.request

PROCESSORS = ["price-change", "below-average", "risk-scoring", "daily-consolidation"]
SERIES = {
    "fluxo_consumer_lag_records": "lag",
    "fluxo_records_in_total": "in",
    "fluxo_records_out_total": "out",
    "fluxo_records_dead_lettered_total": "dlq",
}
LINE = re.compile(r'^(\w+)\{([^}]*)\}\s+(\S+)$')
PROC = re.compile(r'processor="([^"]+)"')
CLK_TCK = os.sysconf("SC_CLK_TCK")

FIELDS = (
    ["t", "elapsed_s", "rss_mib", "rss_anon_mib", "rss_file_mib", "hwm_mib", "fds", "threads",
     "cpu_s", "cpu_pct", "state_mib", "broker_rss_mib", "broker_cpu_pct", "load1"]
    + [f"{k}_{p}" for k in SERIES.values() for p in PROCESSORS]
    + [f"ckpt_ms_{p}" for p in PROCESSORS]
)
# Mean checkpoint duration per processor over each interval, from the histogram's _sum/_count.
CKPT = re.compile(r'^fluxo_checkpoint_duration_seconds_(sum|count)\{[^}]*processor="([^"]+)"[^}]*\}\s+(\S+)$')


def status(pid):
    """The kB fields of /proc/<pid>/status that we use, in MiB, plus Threads."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(rest.split()[0]) / 1024
            elif key == "Threads":
                out[key] = int(rest)
    return out


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def scrape(url):
    out = {}
    with urllib.request.urlopen(url, timeout=3) as r:
        for line in r.read().decode().splitlines():
            c = CKPT.match(line)
            if c:
                key = f"ckpt_{c.group(1)}_{c.group(2)}"
                out[key] = out.get(key, 0) + float(c.group(3))
                continue
            m = LINE.match(line)
            if not m or m.group(1) not in SERIES:
                continue
            p = PROC.search(m.group(2))
            if not p:
                continue
            key = f"{SERIES[m.group(1)]}_{p.group(1)}"
            out[key] = out.get(key, 0) + float(m.group(3))
    return out


def main():
    if len(sys.argv) not in (6, 7):
        sys.exit(__doc__)
    url, pid, broker_pid, state_file, path = sys.argv[1:6]
    interval = float(sys.argv[6]) if len(sys.argv) == 7 else 10.0
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    t0 = time.time()
    prev = None  # (wall time, fluxo CPU s, broker CPU s)
    prev_metrics = {}
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        next_t = t0
        while running[0]:
            now = time.time()
            try:
                st = status(pid)
                cpu = cpu_s(pid)
                fds = len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                break  # fluxo is gone
            try:
                bst = status(broker_pid) if broker_pid else {}
                bcpu = cpu_s(broker_pid) if broker_pid else None
            except OSError:
                bst, bcpu = {}, None
            try:
                metrics = scrape(url)
            except OSError:
                metrics = {}
            try:
                state = os.path.getsize(state_file) / 2**20
            except OSError:
                state = ""
            with open("/proc/loadavg") as lf:
                load1 = float(lf.read().split()[0])
            row = {
                "t": f"{now:.1f}", "elapsed_s": f"{now - t0:.1f}",
                "rss_mib": f"{st.get('VmRSS', 0):.1f}", "rss_anon_mib": f"{st.get('RssAnon', 0):.1f}",
                "rss_file_mib": f"{st.get('RssFile', 0):.1f}", "hwm_mib": f"{st.get('VmHWM', 0):.1f}",
                "fds": fds, "threads": st.get("Threads", ""), "cpu_s": f"{cpu:.2f}",
                "cpu_pct": "", "state_mib": f"{state:.1f}" if state != "" else "",
                "broker_rss_mib": f"{bst['VmRSS']:.1f}" if "VmRSS" in bst else "",
                "broker_cpu_pct": "", "load1": load1,
            }
            if prev is not None and now > prev[0]:
                row["cpu_pct"] = f"{100 * (cpu - prev[1]) / (now - prev[0]):.1f}"
                if bcpu is not None and prev[2] is not None:
                    row["broker_cpu_pct"] = f"{100 * (bcpu - prev[2]) / (now - prev[0]):.1f}"
            prev = (now, cpu, bcpu)
            for k in FIELDS[14:]:
                if k.startswith("ckpt_ms_"):
                    p = k[len("ckpt_ms_"):]
                    ds = metrics.get(f"ckpt_sum_{p}", 0) - prev_metrics.get(f"ckpt_sum_{p}", 0)
                    dc = metrics.get(f"ckpt_count_{p}", 0) - prev_metrics.get(f"ckpt_count_{p}", 0)
                    row[k] = f"{1000 * ds / dc:.1f}" if prev_metrics and metrics and dc > 0 else ""
                    continue
                v = metrics.get(k)
                row[k] = "" if v is None else f"{v:.0f}"
            if metrics:
                prev_metrics = metrics
            w.writerow(row)
            f.flush()
            next_t += interval
            while running[0] and time.time() < next_t:
                time.sleep(min(0.5, max(0.0, next_t - time.time())))


if __name__ == "__main__":
    main()
