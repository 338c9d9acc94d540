#!/usr/bin/env python3
"""Runs one engine of benches/peers/throughput.sh over a preloaded topic and measures it.

measure.py --engine NAME --mode fluxo|peer|passthrough --expect N --broker-pid PID --log FILE
           [--metrics URL --processor P --topic T] -- COMMAND...

Starts COMMAND (stdout and stderr to FILE), and takes the processing process's CPU time
(utime + stime of /proc/<pid>/stat) and the broker's at the moment the engine took its first
record and when it had all N:
  fluxo: polled every 0.1 s from its /metrics (fluxo_records_in_total > 0; then
         fluxo_checkpointed_offset summed over partitions >= N: state and, under exactly_once,
         the transaction committed);
  peer: the `peers: first <ms> <cpu>` / `peers: done <n> <ms> <cpu>` lines the Kafka Streams and
        Flink peers print themselves (fluxo.peers.Meter, when the N-th record was processed;
        their commit follows: <= 100 ms for Kafka Streams under EOS, the next checkpoint for Flink);
  passthrough: the JSON line benches/loadtest.rs prints (first record to last acknowledgement,
        its whole CPU time), the broker's CPU over its whole run.
Peak RSS is VmHWM. Prints one JSON line; stops COMMAND when done.

fluxo mode with --instances K (benches/scaling.sh): starts COMMAND K times at once, "{i}" in its
arguments replaced by the instance number, with FLUXO_HTTP_ADDR = --http-base's port + i and
FLUXO_DATA_DIR = --data-dir-<i> (each its own store), logs FILE.<i>. The first record is the first
of any instance; the end is when, summed over partitions, the highest fluxo_checkpointed_offset
any instance reports reaches N (an instance that lost a partition keeps reporting the offset it
had, below the end, so the highest is the current holder's once it is done). CPU and peak RSS are
summed over the instances; hwm_mib_each lists them.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

TCK = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / TCK
    except (OSError, IndexError, ValueError):
        return None


def tree_cpu(pid):
    """CPU of a process and its children that still run (run.sh execs java, so one process)."""
    return cpu(pid)


def hwm(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def metric_sum(url, name, processor, topic):
    try:
        text = urllib.request.urlopen(url, timeout=2).read().decode()
    except OSError:
        return 0
    s = 0
    for line in text.splitlines():
        if line.startswith(name + "{") and f'processor="{processor}"' in line and f'topic="{topic}"' in line:
            s += float(line.rsplit(" ", 1)[1])
    return s


def partition_max(urls, name, processor, topic):
    """Per partition the highest value of a gauge over the instances at `urls`, summed."""
    best = {}
    for url in urls:
        try:
            text = urllib.request.urlopen(url, timeout=2).read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(name + "{") and f'processor="{processor}"' in line and f'topic="{topic}"' in line:
                part = re.search(r'partition="(\d+)"', line)
                key = part.group(1) if part else line
                best[key] = max(best.get(key, 0), float(line.rsplit(" ", 1)[1]))
    return sum(best.values())


def start_instances(a, cmd):
    """The K instances of --instances: their Popen objects and /metrics URLs."""
    host, port = a.http_base.rsplit(":", 1)
    procs, urls = [], []
    for i in range(a.instances):
        env = dict(os.environ, FLUXO_HTTP_ADDR=f"{host}:{int(port) + i}", FLUXO_DATA_DIR=f"{a.data_dir}-{i}")
        log = open(a.log if i == 0 else f"{a.log}.{i}", "w")
        procs.append(subprocess.Popen([c.replace("{i}", str(i)) for c in cmd], stdout=log, stderr=log, env=env))
        urls.append(f"http://{host}:{int(port) + i}/metrics")
    return procs, urls


def measure_instances(a, cmd):
    """--instances: like fluxo mode, over K processes (see the module's doc)."""
    load0 = open("/proc/loadavg").read().split()[:3]
    procs, urls = start_instances(a, cmd)
    group_cpu = lambda: sum(cpu(p.pid) or 0 for p in procs)
    first = done = None
    deadline = time.time() + a.timeout
    while time.time() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.1)
        if first is None and sum(metric_sum(u, "fluxo_records_in_total", a.processor, a.topic) for u in urls) > 0:
            first = (time.time(), group_cpu(), cpu(a.broker_pid))
        if first and partition_max(urls, "fluxo_checkpointed_offset", a.processor, a.topic) >= a.expect:
            done = (time.time(), group_cpu(), cpu(a.broker_pid))
            break
    each = [hwm(p.pid) or 0 for p in procs]
    records_in = sum(metric_sum(u, "fluxo_records_in_total", a.processor, a.topic) for u in urls)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
    result = {"engine": a.engine, "records": a.expect, "instances": a.instances,
              "hwm_mib": round(sum(each), 1), "hwm_mib_each": [round(h, 1) for h in each],
              "records_in_total": records_in}
    if not (first and done):
        result["error"] = f"no {'first record' if not first else 'completion'} seen"
        print(json.dumps(result))
        return 1
    secs = done[0] - first[0]
    m = a.expect / 1e6
    result.update(seconds=round(secs, 2), records_per_s=a.expect / secs, cpu_s=round(done[1] - first[1], 2),
                  broker_cpu_s=round(done[2] - first[2], 2))
    result["cpu_s_per_M"] = round(result["cpu_s"] / m, 2)
    result["broker_cpu_s_per_M"] = round(result["broker_cpu_s"] / m, 2)
    result["load"] = " ".join(load0) + " / " + " ".join(open("/proc/loadavg").read().split()[:3])
    print(json.dumps(result))
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", required=True)
    ap.add_argument("--mode", required=True, choices=["fluxo", "peer", "passthrough"])
    ap.add_argument("--expect", type=int, required=True)
    ap.add_argument("--broker-pid", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--metrics")
    ap.add_argument("--processor")
    ap.add_argument("--topic")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--instances", type=int, help="fluxo mode: start K instances (see above)")
    ap.add_argument("--http-base", help="with --instances: HOST:PORT of instance 0")
    ap.add_argument("--data-dir", help="with --instances: data directories <this>-<i>")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if a.instances:
        return measure_instances(a, cmd)
    load0 = open("/proc/loadavg").read().split()[:3]
    log = open(a.log, "w")
    out_path = a.log + ".out"
    out = open(out_path, "w") if a.mode == "passthrough" else log
    b_start = cpu(a.broker_pid)
    p = subprocess.Popen(cmd, stdout=out, stderr=log)
    first = done = None  # (wall s, process cpu, broker cpu)
    deadline = time.time() + a.timeout
    result = {"engine": a.engine, "records": a.expect}
    while time.time() < deadline:
        time.sleep(0.1)
        if p.poll() is not None:
            break
        if a.mode == "fluxo":
            if first is None and metric_sum(a.metrics, "fluxo_records_in_total", a.processor, a.topic) > 0:
                first = (time.time(), cpu(p.pid), cpu(a.broker_pid))
            if first and metric_sum(a.metrics, "fluxo_checkpointed_offset", a.processor, a.topic) >= a.expect:
                done = (time.time(), cpu(p.pid), cpu(a.broker_pid))
                break
        elif a.mode == "peer":
            text = open(a.log).read()
            m = re.search(r"^peers: first (\d+) ([\d.]+)", text, re.M)
            if m and first is None:
                first = (int(m.group(1)) / 1000, float(m.group(2)), cpu(a.broker_pid))
            m = re.search(r"^peers: done \d+ (\d+) ([\d.]+)", text, re.M)
            if m:
                done = (int(m.group(1)) / 1000, float(m.group(2)), cpu(a.broker_pid))
                break
    result["hwm_mib"] = hwm(p.pid)
    if a.mode == "passthrough":
        p.wait(timeout=max(1, deadline - time.time()))
        b_end = cpu(a.broker_pid)
        pt = json.loads(open(out_path).read().strip().splitlines()[-1])
        secs = pt["seconds"]
        result.update(seconds=secs, records_per_s=a.expect / secs, cpu_s=pt["cpu_s"], hwm_mib=pt["hwm_mib"],
                      broker_cpu_s=round(b_end - b_start, 2), note="process CPU and broker CPU over the whole run")
    else:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        if not (first and done):
            result["error"] = f"no {'first record' if not first else 'completion'} seen (exit {p.returncode})"
            print(json.dumps(result))
            return 1
        secs = done[0] - first[0]
        result.update(seconds=round(secs, 2), records_per_s=a.expect / secs if secs > 0 else None,
                      cpu_s=round(done[1] - first[1], 2), broker_cpu_s=round(done[2] - first[2], 2))
    m = a.expect / 1e6
    result["cpu_s_per_M"] = round(result["cpu_s"] / m, 2)
    result["broker_cpu_s_per_M"] = round(result["broker_cpu_s"] / m, 2)
    result["load"] = " ".join(load0) + " / " + " ".join(open("/proc/loadavg").read().split()[:3])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
