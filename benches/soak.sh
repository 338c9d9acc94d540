#!/usr/bin/env bash
# The soak of issue 16 (item 7): one `fluxo run` with every processor of the shipped topology
# (price-change, below-average, risk-scoring, daily-consolidation) under a steady mixed load for
# SOAK_SECONDS, with its memory, file descriptors, CPU and consumer lag sampled every SAMPLE_S
# seconds; then a summary (summary.md, summary.json) and a plot (soak.svg).
#
# Usage (repository root):
#   FLUXO_BIN=/path/to/release/fluxo benches/soak.sh
#   SOAK_SECONDS=120 benches/soak.sh           # a short run to try the script
#
# What it does:
#   1. `fluxo up` with the topology cut before its processors: Apache Kafka (single node, KRaft,
#      through scripts/kafka, from ~/.cache/fluxo), the embedded registry and every topic, on free
#      ports unless given (so it never meets another broker on the machine); fresh data in
#      $SOAK_DIR/infra.
#   2. 1,000 simulated blacklist entries (`fluxo produce --simulate blacklist`), so that risk
#      scoring looks payers up in a non-empty blacklist.
#   3. `fluxo run` with the whole topology (all four processors in one process, the topology's
#      runtime settings: exactly_once, 200 ms checkpoints, embedded redb store) on fresh state in
#      $SOAK_DIR/run, and benches/soak_sample.py sampling it into samples.csv.
#   4. Three `fluxo produce --simulate ... --rate R` at fixed rates, for SOAK_SECONDS each:
#      quotes into asset-prices (read by price-change and below-average), payments into
#      transactions (risk-scoring), ledger entries into ledger-entries (daily-consolidation).
#   5. DRAIN_S more seconds of sampling once the producers are done (lag back to 0), the
#      consumer groups' committed offsets from Kafka's own tool (groups-end.txt: an independent
#      check of the lag), a last /metrics snapshot, then SIGTERM to fluxo run and the broker.
#   6. The state file's tables, entries and bytes (benches/redb-stats: state-tables.txt), then
#      benches/soak_report.py: summary.md / summary.json (first, last and max RSS, the slope of
#      RSS over the last 20 minutes (the last two thirds of a shorter run), fds min/max, max lag,
#      records in and out, warnings and errors in fluxo's log) and soak.svg.
#
# Environment (defaults in brackets):
#   FLUXO_BIN [target/release/fluxo]   TOPOLOGY [topology.toml]   PYTHON [python3]
#   SOAK_DIR [benches/reports/soak-<UTC time>] (git-ignored)
#   SOAK_SECONDS [1800]  how long the producers run      SAMPLE_S [10]   DRAIN_S [30]
#   PRICES_RATE [400]  TX_RATE [200]  LEDGER_RATE [200]   records/s of each producer
#   BLACKLIST_N [1000]  blacklist entries produced before fluxo starts
#   STATE_STATS [1]     1: after the run, the state file's tables and their sizes
#                       (state-tables.txt, by benches/redb-stats, built with cargo in debug)
#   CACHE_MB [the topology's]  redb's page cache in MiB: written as `cache_mb` under `[state]` of
#                       the run's copy of the topology (unset: the topology's own, default 512)
#   SNAP_S [300]        every SNAP_S seconds, /proc/<pid>/smaps_rollup and /metrics of fluxo run
#                       into snap/<elapsed s>.{smaps,metrics} (0: none)
#   BROKER, REGISTRY, INFRA_HTTP, HTTP   addresses (127.0.0.1:<free port> each)
#   FLUXO_DOCUMENT_KEY [a random key for this run]: the pseudonymization key; an unset key would
#                      fall back to the public development key with a warning in the log.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
FLUXO_BIN=${FLUXO_BIN:-$ROOT/target/release/fluxo}
TOPOLOGY=${TOPOLOGY:-$ROOT/topology.toml}
PYTHON=${PYTHON:-python3}
SOAK_DIR=${SOAK_DIR:-$ROOT/benches/reports/soak-$(date -u +%Y%m%dT%H%M%SZ)}
SOAK_SECONDS=${SOAK_SECONDS:-1800}
SAMPLE_S=${SAMPLE_S:-10}
DRAIN_S=${DRAIN_S:-30}
PRICES_RATE=${PRICES_RATE:-400}
TX_RATE=${TX_RATE:-200}
LEDGER_RATE=${LEDGER_RATE:-200}
BLACKLIST_N=${BLACKLIST_N:-1000}
STATE_STATS=${STATE_STATS:-1}
CACHE_MB=${CACHE_MB:-}
SNAP_S=${SNAP_S:-300}
SEED=${SEED:-7}

[[ -x $FLUXO_BIN ]] || { echo "soak: no fluxo binary at $FLUXO_BIN (set FLUXO_BIN)" >&2; exit 2; }
for v in SOAK_SECONDS SAMPLE_S DRAIN_S PRICES_RATE TX_RATE LEDGER_RATE BLACKLIST_N SNAP_S ${CACHE_MB:+CACHE_MB}; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "soak: $v=${!v}: a whole number" >&2; exit 2; }
done

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BROKER=${BROKER:-127.0.0.1:$(free_port)}
REGISTRY=${REGISTRY:-http://127.0.0.1:$(free_port)}
INFRA_HTTP=${INFRA_HTTP:-127.0.0.1:$(free_port)}
HTTP=${HTTP:-127.0.0.1:$(free_port)}
listening() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
for addr in "$BROKER" "${REGISTRY#http://}" "$INFRA_HTTP" "$HTTP"; do
  if listening "$addr"; then echo "soak: something already listens on $addr; pick other ports" >&2; exit 1; fi
done

# A fresh key per run unless one is given: the development key would put a warning in the log,
# and the key itself is never printed.
if [[ -z ${FLUXO_DOCUMENT_KEY:-} ]]; then
  FLUXO_DOCUMENT_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
fi
export FLUXO_DOCUMENT_KEY
export FLUXO_BOOTSTRAP_SERVERS=$BROKER FLUXO_SCHEMA_REGISTRY_URL=$REGISTRY

mkdir -p "$SOAK_DIR"
echo "soak: results in $SOAK_DIR; broker $BROKER, fluxo run on http://$HTTP" >&2
cp "$TOPOLOGY" "$SOAK_DIR/topology.toml"
if [[ -n $CACHE_MB ]]; then
  # The run's copy gets CACHE_MB as the only cache_mb of its [state] section.
  awk -v mb="$CACHE_MB" '
    /^\[/ { in_state = ($0 ~ /^\[state\][ \t]*(#.*)?$/) }
    in_state && /^[ \t]*cache_mb[ \t]*=/ { next }
    { print }
    /^\[state\][ \t]*(#.*)?$/ { print "cache_mb = " mb }' "$TOPOLOGY" >"$SOAK_DIR/topology.toml"
fi
# The infrastructure: everything before the processors (topics included).
awk '/^\[processors\./ { exit } { print }' "$TOPOLOGY" >"$SOAK_DIR/infra.toml"

INFRA_PID='' RUN_PID='' SAMPLER_PID='' SNAP_PID='' BROKER_PID=''
PROD_PIDS=()
is_broker() { [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q 'kafka\.Kafka'; }
stop_all() {
  local p i
  for p in "${PROD_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  if [[ -n $SNAP_PID ]]; then kill -TERM "$SNAP_PID" 2>/dev/null || true; wait "$SNAP_PID" 2>/dev/null || true; SNAP_PID=; fi
  if [[ -n $SAMPLER_PID ]]; then kill -TERM "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=; fi
  if [[ -n $RUN_PID ]]; then kill -TERM "$RUN_PID" 2>/dev/null || true; wait "$RUN_PID" 2>/dev/null || true; RUN_PID=; fi
  if [[ -n $INFRA_PID ]]; then kill -TERM "$INFRA_PID" 2>/dev/null || true; wait "$INFRA_PID" 2>/dev/null || true; INFRA_PID=; fi
  # `fluxo up` stops its broker; one left behind is stopped here (only the pid it wrote).
  if [[ -n $BROKER_PID ]]; then
    for ((i = 0; i < 100; i++)); do is_broker "$BROKER_PID" || break; sleep 0.1; done
    if is_broker "$BROKER_PID"; then kill -TERM "$BROKER_PID" 2>/dev/null || true; fi
    BROKER_PID=
  fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

wait_http() {  # URL PID LOG WHAT
  local n=0
  until curl -sf --max-time 1 "$1" >/dev/null 2>&1; do
    kill -0 "$2" 2>/dev/null || { echo "soak: $4 exited:" >&2; tail -20 "$3" >&2; exit 1; }
    sleep 0.2; n=$((n + 1))
    ((n < 1500)) || { echo "soak: $4 not up after 300 s" >&2; exit 1; }
  done
}
metric_sum() {  # NAME PROCESSOR: the sum of NAME's series for PROCESSOR
  curl -sf --max-time 5 "http://$HTTP/metrics" | awk -v n="$1{" -v p="processor=\"$2\"" '
    index($0, n) == 1 && index($0, p) { s += $NF } END { printf "%d", s }'
}

# ---------------------------------------------------------------- 1. broker, registry, topics
FLUXO_HTTP_ADDR=$INFRA_HTTP FLUXO_DATA_DIR=$SOAK_DIR/infra \
  "$FLUXO_BIN" --topology "$SOAK_DIR/infra.toml" up >"$SOAK_DIR/infra.log" 2>&1 &
INFRA_PID=$!
n=0
until grep -q '^ready' "$SOAK_DIR/infra.log" 2>/dev/null || curl -sf --max-time 1 "http://$INFRA_HTTP/readyz" >/dev/null 2>&1; do
  kill -0 "$INFRA_PID" 2>/dev/null || { echo "soak: fluxo up exited:" >&2; tail -20 "$SOAK_DIR/infra.log" >&2; exit 1; }
  sleep 0.2; n=$((n + 1)); ((n < 1500)) || { echo "soak: fluxo up not ready after 300 s" >&2; exit 1; }
done
BROKER_PID=$(cat "$SOAK_DIR/infra/kafka/kafka.pid" 2>/dev/null || true)
is_broker "${BROKER_PID:-0}" || { echo "soak: no broker JVM in $SOAK_DIR/infra/kafka/kafka.pid" >&2; BROKER_PID=; }
KAFKA_LIB=$(tr '\0' '\n' <"/proc/${BROKER_PID:-0}/cmdline" 2>/dev/null | sed -n 's|^\(.*/kafka-[0-9][^/]*/lib\)/\*$|\1|p' | head -1 || true)
KAFKA_JAVA=$(readlink -f "/proc/${BROKER_PID:-0}/exe" 2>/dev/null || echo java)
echo "soak: Kafka (pid ${BROKER_PID:-?}) and registry up" >&2

# ---------------------------------------------------------------- 2. blacklist
if ((BLACKLIST_N > 0)); then
  "$FLUXO_BIN" --topology "$SOAK_DIR/topology.toml" produce --simulate blacklist --count "$BLACKLIST_N" \
    --seed "$SEED" 2>"$SOAK_DIR/produce-blacklist.err" || { echo "soak: blacklist produce failed" >&2; tail -5 "$SOAK_DIR/produce-blacklist.err" >&2; exit 1; }
fi

# ---------------------------------------------------------------- 3. fluxo run + sampler
FLUXO_HTTP_ADDR=$HTTP FLUXO_DATA_DIR=$SOAK_DIR/run \
  "$FLUXO_BIN" --topology "$SOAK_DIR/topology.toml" run >"$SOAK_DIR/run.log" 2>&1 &
RUN_PID=$!
wait_http "http://$HTTP/metrics" "$RUN_PID" "$SOAK_DIR/run.log" "fluxo run"
PROCS=(price-change below-average risk-scoring daily-consolidation)
deadline=$(( $(date +%s) + 120 ))
for p in "${PROCS[@]}"; do
  until (( $(metric_sum fluxo_assigned_partitions "$p") > 0 )); do
    kill -0 "$RUN_PID" 2>/dev/null || { echo "soak: fluxo run exited:" >&2; tail -20 "$SOAK_DIR/run.log" >&2; exit 1; }
    (( $(date +%s) < deadline )) || { echo "soak: $p has no partitions after 120 s" >&2; break; }
    sleep 0.5
  done
done
STATE_FILE=$SOAK_DIR/run/$(awk '/^\[state\]/ { s = 1; next } /^\[/ { s = 0 } s && /^path[ \t]*=/ { gsub(/[" ]/, ""); sub(/^path=/, ""); sub(/#.*/, ""); print; exit }' "$SOAK_DIR/topology.toml")
"$PYTHON" "$ROOT/benches/soak_sample.py" "http://$HTTP/metrics" "$RUN_PID" "${BROKER_PID:-}" \
  "$STATE_FILE" "$SOAK_DIR/samples.csv" "$SAMPLE_S" 2>"$SOAK_DIR/sampler.err" &
SAMPLER_PID=$!
T_START=$(date -u +%FT%TZ)
if ((SNAP_S > 0)); then
  # Where the resident memory is (anonymous, file, swap) and the full /metrics, every SNAP_S.
  mkdir -p "$SOAK_DIR/snap"
  (
    t0=$(date +%s)
    while kill -0 "$RUN_PID" 2>/dev/null; do
      e=$(( $(date +%s) - t0 ))
      cat "/proc/$RUN_PID/smaps_rollup" >"$SOAK_DIR/snap/$e.smaps" 2>/dev/null || true
      curl -sf --max-time 5 "http://$HTTP/metrics" >"$SOAK_DIR/snap/$e.metrics" 2>/dev/null || true
      # One-second steps: stopping this loop leaves no sleep behind.
      for ((i = 0; i < SNAP_S; i++)); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 1; done
    done
  ) &
  SNAP_PID=$!
fi
echo "soak: fluxo run (pid $RUN_PID) has its partitions; sampling every ${SAMPLE_S} s from $T_START" >&2

# ---------------------------------------------------------------- 4. steady mixed load
produce() {  # SIM RATE
  local sim=$1 rate=$2
  ((rate > 0)) || return 0
  SEED=$((SEED + 1))
  "$FLUXO_BIN" --topology "$SOAK_DIR/topology.toml" produce --simulate "$sim" --rate "$rate" \
    --count $((rate * SOAK_SECONDS)) --seed "$SEED" 2>"$SOAK_DIR/produce-$sim.err" &
  PROD_PIDS+=($!)
}
produce prices "$PRICES_RATE"
produce transactions "$TX_RATE"
produce ledger "$LEDGER_RATE"
echo "soak: ${PRICES_RATE} quotes/s, ${TX_RATE} payments/s, ${LEDGER_RATE} ledger entries/s for ${SOAK_SECONDS} s" >&2
prod_rc=0
for p in "${PROD_PIDS[@]}"; do
  # The producers end by themselves after SOAK_SECONDS (plus their start-up); fluxo dying ends the soak.
  while kill -0 "$p" 2>/dev/null; do
    kill -0 "$RUN_PID" 2>/dev/null || { echo "soak: fluxo run died during the soak" >&2; break 2; }
    sleep 1
  done
  wait "$p" || prod_rc=$?
done
# With fluxo gone the remaining producers are stopped, not left behind.
for p in "${PROD_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
PROD_PIDS=()
T_LOAD_END=$(date -u +%FT%TZ)
echo "soak: producers done at $T_LOAD_END (exit ${prod_rc}); draining ${DRAIN_S} s" >&2

# ---------------------------------------------------------------- 5. drain, checks, stop
sleep "$DRAIN_S"
curl -sf --max-time 5 "http://$HTTP/metrics" >"$SOAK_DIR/metrics-end.txt" || true
if [[ -n $KAFKA_LIB ]]; then
  # Kafka's own view of the groups (committed offsets vs log end): independent of fluxo's metrics.
  timeout 60 "$KAFKA_JAVA" -Xmx128m -cp "$KAFKA_LIB/*" org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
    --bootstrap-server "$BROKER" --describe --all-groups >"$SOAK_DIR/groups-end.txt" 2>"$SOAK_DIR/groups-end.err" || true
fi
kill -TERM "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=
if [[ -n $SNAP_PID ]]; then kill -TERM "$SNAP_PID" 2>/dev/null || true; wait "$SNAP_PID" 2>/dev/null || true; SNAP_PID=; fi
RUN_ALIVE=true; kill -0 "$RUN_PID" 2>/dev/null || RUN_ALIVE=false
run_rc=0
kill -TERM "$RUN_PID" 2>/dev/null || true
wait "$RUN_PID" || run_rc=$?
RUN_PID=
stop_all
trap - EXIT

# Which state the file holds, table by table (benches/redb-stats, debug build of redb alone,
# about 2 min the first time); redb locks the file, so only now that fluxo is gone.
if [[ $STATE_STATS == 1 && -f $STATE_FILE ]]; then
  if nice -n 10 cargo build --quiet --manifest-path "$ROOT/benches/redb-stats/Cargo.toml" >"$SOAK_DIR/redb-stats.build.log" 2>&1; then
    "$ROOT/benches/redb-stats/target/debug/redb-stats" "$STATE_FILE" >"$SOAK_DIR/state-tables.txt" 2>&1 || true
  else
    echo "soak: could not build benches/redb-stats (see $SOAK_DIR/redb-stats.build.log); no state-tables.txt" >&2
  fi
fi

acked() { local n; n=$(sed -n 's/^produced \([0-9]*\) of .*/\1/p' "$SOAK_DIR/produce-$1.err" 2>/dev/null | tail -1); echo "${n:-null}"; }
cat >"$SOAK_DIR/meta.json" <<EOF
{"command": "${CACHE_MB:+CACHE_MB=$CACHE_MB }SOAK_SECONDS=$SOAK_SECONDS SAMPLE_S=$SAMPLE_S PRICES_RATE=$PRICES_RATE TX_RATE=$TX_RATE LEDGER_RATE=$LEDGER_RATE benches/soak.sh",
 "fluxo": "$("$FLUXO_BIN" --version 2>/dev/null | head -1) ($FLUXO_BIN)",
 "tree": "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || true)",
 "host": "$(nproc) CPU $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)",
 "start": "$T_START", "load_end": "$T_LOAD_END", "end": "$(date -u +%FT%TZ)",
 "soak_seconds": $SOAK_SECONDS, "sample_s": $SAMPLE_S, "drain_s": $DRAIN_S,
 "rates": {"prices": $PRICES_RATE, "transactions": $TX_RATE, "ledger": $LEDGER_RATE}, "blacklist": $BLACKLIST_N,
 "produced": {"prices": $(acked prices), "transactions": $(acked transactions), "ledger": $(acked ledger)},
 "producers_exit": $prod_rc, "fluxo_alive_at_end": $RUN_ALIVE, "fluxo_exit": $run_rc}
EOF
"$PYTHON" "$ROOT/benches/soak_report.py" "$SOAK_DIR"
echo "soak: summary in $SOAK_DIR/summary.md, plot in $SOAK_DIR/soak.svg" >&2
