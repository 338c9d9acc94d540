#!/usr/bin/env bash
# ab.sh NAME FLUXO_BIN GUARANTEE SCENARIO: one fluxo-only throughput run, under the bench lock.
set -u
name=$1 bin=$2 g=$3 s=$4
out=/work/perfwork/ab/$name
mkdir -p /work/perfwork/ab
cd /work/wt-perf
flock /tmp/fluxo-bench.lock env GUARANTEE=$g ENGINES=fluxo SCENARIOS=$s FLUXO_BIN=$bin OUT=$out benches/peers/throughput.sh > $out.log 2>&1
grep '| fluxo' $out/report.md | sed "s/^/$name /"
