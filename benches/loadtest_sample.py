#!/usr/bin/env python3
"""Samples a running `fluxo run` once per interval for benches/loadtest.sh (stdlib only).

Usage: loadtest_sample.py METRICS_URL FLUXO_PID BROKER_PID OUT.jsonl [INTERVAL_S]

Every INTERVAL_S (default 1) appends one JSON line: wall time (ms), per processor the sums over
partitions/topics of fluxo_records_in_total, fluxo_records_out_total,
fluxo_consumer_lag_records and fluxo_checkpointed_offset, the CPU seconds (user + system) and
resident set (VmRSS, MiB) of fluxo and of the broker (BROKER_PID: the Kafka JVM; empty: none)
from /proc, and the 1-minute load average. Stops on SIGTERM or when FLUXO_PID is gone.
"""

import json
import os
import re
import signal
import sys
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
SERIES = {
    "fluxo_records_in_total": "in",
    "fluxo_records_out_total": "out",
    "fluxo_consumer_lag_records": "lag",
    "fluxo_checkpointed_offset": "checkpointed",
}
LINE = re.compile(r'^(\w+)\{([^}]*)\}\s+(\S+)$')
PROC = re.compile(r'processor="([^"]+)"')


def proc_usage(pid):
    """(CPU seconds, RSS MiB) of a live process, or (None, None)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
        with open(f"/proc/{pid}/status") as f:
            rss = next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0)
        return (int(fields[11]) + int(fields[12])) / CLK_TCK, rss / 1024
    except (OSError, IndexError, ValueError):
        return None, None


def scrape(url):
    out = {}
    with urllib.request.urlopen(url, timeout=2) as r:
        for line in r.read().decode().splitlines():
            m = LINE.match(line)
            if not m or m.group(1) not in SERIES:
                continue
            p = PROC.search(m.group(2))
            if not p:
                continue
            row = out.setdefault(p.group(1), {})
            key = SERIES[m.group(1)]
            row[key] = row.get(key, 0) + float(m.group(3))
    return out


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    url, fluxo_pid, broker_pid, path = sys.argv[1:5]
    interval = float(sys.argv[5]) if len(sys.argv) == 6 else 1.0
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    with open(path, "a") as out:
        next_t = time.time()
        while running[0]:
            fluxo_cpu, fluxo_rss = proc_usage(fluxo_pid)
            if fluxo_cpu is None:
                break
            broker_cpu, broker_rss = proc_usage(broker_pid) if broker_pid else (None, None)
            try:
                processors = scrape(url)
            except OSError:
                processors = None
            with open("/proc/loadavg") as f:
                load1 = float(f.read().split()[0])
            out.write(json.dumps({
                "t_ms": int(time.time() * 1000),
                "processors": processors,
                "fluxo_cpu_s": fluxo_cpu, "fluxo_rss_mib": fluxo_rss,
                "broker_cpu_s": broker_cpu, "broker_rss_mib": broker_rss,
                "load1": load1,
            }) + "\n")
            out.flush()
            next_t += interval
            time.sleep(max(0.0, next_t - time.time()))


if __name__ == "__main__":
    main()
