#!/usr/bin/env bash
# Scaling of issue 15, item 4: how fluxo's throughput, cost per record and memory move with the
# volume, the number of distinct keys (the state) and the number of instances in one group.
# Every case is one run of benches/peers/throughput.sh with ENGINES=fluxo (a fresh Apache Kafka
# broker through `fluxo up`, N records preloaded with `fluxo produce --simulate --seed 21`, then
# `fluxo run` consumes them from the beginning; benches/peers/measure.py takes records/s,
# CPU-seconds per million records of fluxo and of the broker from /proc, and peak RSS (VmHWM)).
# Each case holds the shared benchmark lock for its whole run (broker start, preload and
# measurement), so two measurements on the machine never overlap, and releases it between cases.
#
# Usage: benches/scaling.sh [volume] [keys] [instances]   (default: all three, in this order)
#   volume    price change and consolidation alone, at each size of VOLUME_N (default keys:
#             13 symbols, 1,000 accounts): is the cost per record flat?
#   keys      KEYS_N records over each count of KEYS_LIST distinct keys (`fluxo produce --keys`:
#             accounts for consolidation, symbols for price change), consolidation at each
#             `[state] cache_mb` of KEYS_CACHES, price change at the first: RSS and throughput as
#             the state grows
#   instances consolidation, INSTANCES_N entries, 1, 2, 3 ... `fluxo run` in one consumer group
#             (`assignment = "group"`, the embedded store, one state dir and HTTP port each) on
#             the same broker: total records/s and CPU. On 2 cores this shows the coordination
#             cost, not a speed-up.
# Environment (defaults in brackets):
#   OUT [benches/reports/scaling-<UTC time>] one directory per case, report.md at the end
#   FLUXO_BIN [target/release/fluxo]   GUARANTEE [exactly_once] (or at_least_once)
#   VOLUME_N ["100000 1000000 5000000"]   VOLUME_SCENARIOS ["price-change consolidation"]
#   KEYS_LIST ["10000 100000 1000000"]   KEYS_N [1000000]
#   KEYS_SCENARIOS ["consolidation price-change"]   KEYS_CACHES ["64 512"] (512: fluxo run's default)
#   INSTANCES_LIST ["1 2 3"]   INSTANCES_N [1000000]
#   LOCK [/tmp/fluxo-bench.lock] (flock'ed per case)
# A case whose directory already holds a result is skipped, so a stopped run resumes where it
# stopped (delete the case's directory to measure it again). throughput.sh uses fixed ports
# (59092, 58079-58081, 58090+): run one scaling.sh or throughput.sh at a time, under the lock.
# benches/scaling_report.py writes $OUT/report.md from every case's results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/benches/reports/scaling-$(date -u +%Y%m%dT%H%M%SZ)}
FLUXO_BIN=${FLUXO_BIN:-$ROOT/target/release/fluxo}
GUARANTEE=${GUARANTEE:-exactly_once}
VOLUME_N=${VOLUME_N:-"100000 1000000 5000000"}
VOLUME_SCENARIOS=${VOLUME_SCENARIOS:-"price-change consolidation"}
KEYS_LIST=${KEYS_LIST:-"10000 100000 1000000"}
KEYS_N=${KEYS_N:-1000000}
KEYS_SCENARIOS=${KEYS_SCENARIOS:-"consolidation price-change"}
KEYS_CACHES=${KEYS_CACHES:-"64 512"}
INSTANCES_LIST=${INSTANCES_LIST:-"1 2 3"}
INSTANCES_N=${INSTANCES_N:-1000000}
LOCK=${LOCK:-/tmp/fluxo-bench.lock}
parts=("$@")
((${#parts[@]})) || parts=(volume keys instances)
[[ -x $FLUXO_BIN ]] || nice -n 10 cargo build --release --locked --bin fluxo
mkdir -p "$OUT"
echo "scaling: results in $OUT (fluxo $FLUXO_BIN)" >&2

# One case: NAME, then the environment of throughput.sh (N=..., SCENARIOS=..., KEYS=...).
case_run() {
  local name=$1
  shift
  if grep -qs '"engine": "fluxo"' "$OUT/$name/results.jsonl" &&
    ! grep -qs '"error"' "$OUT/$name/results.jsonl"; then
    echo "scaling: $name: done already, skipped" >&2
    return
  fi
  rm -rf "${OUT:?}/$name"
  echo "scaling: $name: waiting for $LOCK ($(uptime))" >&2
  flock "$LOCK" env ENGINES=fluxo GUARANTEE="$GUARANTEE" FLUXO_BIN="$FLUXO_BIN" OUT="$OUT/$name" "$@" \
    "$ROOT/benches/peers/throughput.sh" >"$OUT/$name.log" 2>&1 ||
    echo "scaling: $name failed, see $OUT/$name.log" >&2
  grep -h '"engine"' "$OUT/$name/results.jsonl" >&2 || true
}

volume() {
  local s n
  for s in $VOLUME_SCENARIOS; do
    for n in $VOLUME_N; do case_run "volume-$s-$n" N="$n" SCENARIOS="$s"; done
  done
}

keys() {
  local s k c caches
  for s in $KEYS_SCENARIOS; do
    caches=$KEYS_CACHES
    [[ $s == consolidation ]] || caches=${KEYS_CACHES%% *}
    for c in $caches; do
      for k in $KEYS_LIST; do
        case_run "keys-$s-$KEYS_N-$k-cache$c" N="$KEYS_N" SCENARIOS="$s" KEYS="$k" CACHE_MB="$c"
      done
    done
  done
}

instances() {
  local k
  for k in $INSTANCES_LIST; do
    case_run "instances-$INSTANCES_N-$k" N="$INSTANCES_N" SCENARIOS=consolidation INSTANCES="$k"
  done
}

for p in "${parts[@]}"; do
  case $p in
    volume | keys | instances) "$p" ;;
    *) echo "scaling: unknown part $p (volume, keys, instances)" >&2; exit 2 ;;
  esac
done
python3 "$ROOT/benches/scaling_report.py" "$OUT" >"$OUT/report.md"
cat "$OUT/report.md"
