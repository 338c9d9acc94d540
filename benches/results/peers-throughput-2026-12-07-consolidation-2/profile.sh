#!/usr/bin/env bash
# profile.sh LABEL FLUXO_BIN GUARANTEE [SECONDS]: throughput.sh consolidation fluxo-only, perf attached to `fluxo ... run`.
set -u
label=$1 bin=$2 g=$3 secs=${4:-20}
out=/work/perfwork/$label
mkdir -p $out
cd /work/wt-perf
uptime > $out/uptime-start
GUARANTEE=$g ENGINES=fluxo SCENARIOS=consolidation FLUXO_BIN=$bin OUT=$out/tp benches/peers/throughput.sh > $out/tp.log 2>&1 &
tp=$!
pid=
for i in $(seq 1 1200); do
  for p in $(pgrep -f "^$bin --topology .*/consolidation/topology.toml run"); do
    if tr '\0' ' ' < /proc/$p/cmdline | grep -q ' run'; then pid=$p; fi
  done
  [ -n "$pid" ] && break
  sleep 0.25
done
echo "fluxo pid $pid: $(tr '\0' ' ' < /proc/$pid/cmdline)" > $out/pid
# skip the start-up (restore, first poll)
sleep 3
perf record -F 499 -g --call-graph dwarf,32768 -p $pid -o $out/perf.data -- sleep $secs > $out/perf-record.log 2>&1
wait $tp
uptime > $out/uptime-end
