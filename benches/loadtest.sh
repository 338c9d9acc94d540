#!/usr/bin/env bash
# The load test of issue 6: fluxo against a raw rdkafka passthrough on the same broker and
# topics, with latency, lag, throughput, CPU and memory, written up as Markdown + SVG.
#
# Usage (repository root):
#   benches/loadtest.sh [risk] [risk-latency] [risk-down] [risk-floor] [market] [ledger]
#   Builds what it needs (`cargo build --release`, `cargo bench --no-run --bench loadtest`)
#   unless FLUXO_BIN and LOADTEST_BIN are set, installs matplotlib into a venv for the plots, and
#   writes $LT_DIR/report.md (+ one SVG per instance). Default: every scenario.
#
# The broker is Apache Kafka (single node, KRaft) as `fluxo up` starts it (scripts/kafka), with
# the topology's client settings. Every instance (one scenario under one processing guarantee)
# gets a fresh broker and fresh data directories, so that its topics, consumer groups and
# transactional ids start empty and `fluxo run` starts from fresh state (starting a broker takes
# about 5 s, warming it up with WARMUP a few more); the rates of one scenario run one after the
# other on the same instance:
#   infra: `fluxo up` with a topology without processors = Kafka + embedded registry + every
#   topic (non-default ports, so it never meets a developer's own `fluxo up`; the broker's data
#   and log in <instance>/infra/kafka/); `fluxo run` (the processors alone, fresh state) runs
#   only the scenario's processors, so that the others take no CPU from them.
#   risk, market, ledger (throughput): first the passthrough (benches/loadtest.rs) alone,
#      reading `pt-<input>` (a copy of the input topic's declaration, read by no processor) and
#      writing `pt-<input>.out`, while `fluxo produce --simulate` sends THROUGHPUT_N records
#      into it flat out; then `fluxo run` while the same producer sends THROUGHPUT_N records
#      into the input topic. End-to-end throughput of each = records / (last acknowledged
#      (passthrough) or checkpointed (fluxo; under exactly_once: committed) - producer start);
#      fluxo's times come from polling its /metrics every 0.1 s. The passthrough is not
#      transactional: under exactly_once the ratio includes the cost of the transactions.
#   risk-latency, risk-down (the rate:count runs of RISK_RUNS / DOWN_RUNS, in order, on one
#      instance): `fluxo produce --simulate transactions --rate R`; the tap (benches/loadtest.rs),
#      started before the producer, joins every decision to its transaction and records in HDR
#      histograms event time -> decision's Kafka timestamp (produced) and event time -> the
#      moment the tap, a read_committed consumer, received it (visible: under exactly_once, once
#      the checkpoint's transaction committed). risk-down configures the external validator at
#      VALIDATOR_URL, where nothing listens.
#   risk-floor (the runs of FLOOR_RUNS, one instance, fluxo not running; once, whatever
#      GUARANTEE says): the passthrough alone forwards paced transactions to another topic,
#      measured by the same tap: the latency floor of broker and client settings.
#   Throughout, benches/loadtest_sample.py samples fluxo's /metrics (records in/out, consumer
#   lag, checkpointed offsets) and /proc (CPU, RSS of fluxo and of the broker's JVM, whose pid
#   is in <instance>/infra/kafka/kafka.pid) every SAMPLE_S seconds.
#
# Environment (defaults in brackets):
#   LT_DIR [benches/reports/loadtest-<UTC time>] (git-ignored)   TOPOLOGY [topology.toml]
#   FLUXO_BIN, LOADTEST_BIN [built by the script]   PYTHON [python3, for the venv]
#   BROKER [127.0.0.1:39092]  REGISTRY [http://127.0.0.1:38081]
#   INFRA_HTTP [127.0.0.1:38079]  HTTP [127.0.0.1:38080] (the `fluxo run` under test)
#   GUARANTEE [the topology's processing_guarantee]   exactly_once or effectively_once; a
#                                        space-separated list ("exactly_once effectively_once")
#                                        runs every scenario once per guarantee, side by side
#   FETCH_WAIT [the topology's fetch_wait_max]   fetch_wait_max of fluxo and the passthrough (on
#                                        Kafka it only bounds how long an idle fetch waits)
#   THROUGHPUT_N [100000]                records per throughput phase
#   RISK_RUNS ["500:5000 1000:10000 2500:12500 5000:25000"]   rate:count of risk-latency
#   DOWN_RUNS ["1000:10000 5000:25000"]  the same for risk-down
#   FLOOR_RUNS ["1000:10000 5000:25000"] rate:count of risk-floor
#   WARMUP ["2000:6000"]                 rate:count of paced records the passthrough forwards on
#                                        every fresh broker before it is used (the JVM compiles
#                                        its hot paths meanwhile); 0 or empty: none
#   VALIDATOR_URL [http://127.0.0.1:9]   SAMPLE_S [1]   TIMEOUT [120] seconds per wait
#
# Changes with the move to Kafka: RISK_FETCH_WAIT and THROUGHPUT_FETCH_WAIT are gone (the
# previous development broker answered a fetch only when fetch.wait.max.ms ended, so latency
# runs used 10 ms; Kafka answers as soon as data arrives): FETCH_WAIT sets one value for every
# scenario. GUARANTEE and WARMUP are new, and results.jsonl records each instance's settings
# (guarantee, fetch_wait, idempotent_producer, assignment, checkpoint_interval). THROUGHPUT_N
# went from 10,000 to 100,000 (phases of about a second were dominated by fixed costs, and the
# previous broker could not take larger backlogs). The rates of risk-latency and risk-down share
# one instance, named risk-latency / risk-down (was a fresh broker per rate: risk-<rate>,
# risk-down-<rate>); a run's files are named <run number>-<rate> (tap-1-500.json). The broker's
# figures are broker_cpu_s, broker_hwm_mib (broker_rss_mib in the samples). The tap measures
# latency while the records are produced, adds `visible_ms` and the `steady_*` summaries.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
LT_DIR=${LT_DIR:-$ROOT/benches/reports/loadtest-$(date -u +%Y%m%dT%H%M%SZ)}
TOPOLOGY=${TOPOLOGY:-$ROOT/topology.toml}
BROKER=${BROKER:-127.0.0.1:39092}
REGISTRY=${REGISTRY:-http://127.0.0.1:38081}
INFRA_HTTP=${INFRA_HTTP:-127.0.0.1:38079}
HTTP=${HTTP:-127.0.0.1:38080}
GUARANTEE=${GUARANTEE:-}
FETCH_WAIT=${FETCH_WAIT:-}
THROUGHPUT_N=${THROUGHPUT_N:-100000}
RISK_RUNS=${RISK_RUNS:-"500:5000 1000:10000 2500:12500 5000:25000"}
DOWN_RUNS=${DOWN_RUNS:-"1000:10000 5000:25000"}
VALIDATOR_URL=${VALIDATOR_URL:-http://127.0.0.1:9}
FLOOR_RUNS=${FLOOR_RUNS:-"1000:10000 5000:25000"}
WARMUP=${WARMUP-"2000:6000"}
SAMPLE_S=${SAMPLE_S:-1}
TIMEOUT=${TIMEOUT:-120}
PYTHON=${PYTHON:-python3}
RESULTS=$LT_DIR/results.jsonl
SEED=41

for v in RISK_FETCH_WAIT THROUGHPUT_FETCH_WAIT; do
  [[ -z ${!v:-} ]] || echo "loadtest: $v is no longer used (Kafka answers fetches as data arrives); FETCH_WAIT sets fetch_wait_max for every scenario" >&2
done

# ---------------------------------------------------------------- topology settings
# runtime_get FILE KEY: KEY's value in [runtime] (quotes and comment stripped), or nothing
runtime_get() {
  awk -v k="$2" '
    /^[ \t]*\[/ { rt = ($0 ~ /^[ \t]*\[runtime\][ \t]*(#.*)?$/); next }
    rt && $0 ~ "^[ \t]*" k "[ \t]*=" { sub(/^[^=]*=[ \t]*/, ""); sub(/[ \t]*#.*$/, ""); gsub(/"/, ""); print; exit }' "$1"
}
# runtime_set FILE KEY VALUE: KEY = VALUE (a TOML value) in [runtime], replaced or added
runtime_set() {
  awk -v k="$2" -v v="$3" '
    /^[ \t]*\[/ { if (rt && !done) { print k " = " v; done = 1 } rt = ($0 ~ /^[ \t]*\[runtime\][ \t]*(#.*)?$/) }
    rt && $0 ~ "^[ \t]*" k "[ \t]*=" { if (!done) print k " = " v; done = 1; next }
    { print }
    END { if (!done) { if (!rt) print "\n[runtime]"; print k " = " v } }' "$1" >"$1.tmp" && mv "$1.tmp" "$1"
}
# to_ms DURATION: "100ms", "2s", "1.5m", "1h" -> milliseconds
to_ms() {
  awk -v d="$1" 'BEGIN { u = d; sub(/^[0-9.]+/, "", u); n = substr(d, 1, length(d) - length(u)) + 0
    m = u == "ms" ? 1 : u == "s" ? 1000 : u == "m" ? 60000 : u == "h" ? 3600000 : u == "d" ? 86400000 : -1
    if (m < 0 || n == "") exit 1; printf "%d", n * m }'
}

GUARANTEE=${GUARANTEE:-$(runtime_get "$TOPOLOGY" processing_guarantee)}
read -r -a GUARANTEES <<<"${GUARANTEE:-effectively_once}"   # fluxo's default when the topology has none
for g in "${GUARANTEES[@]}"; do
  [[ $g == exactly_once || $g == effectively_once ]] || { echo "loadtest: GUARANTEE: $g is neither exactly_once nor effectively_once" >&2; exit 2; }
done
if [[ -n $FETCH_WAIT ]] && ! to_ms "$FETCH_WAIT" >/dev/null; then
  echo "loadtest: FETCH_WAIT=$FETCH_WAIT: a duration such as 100ms or 1s" >&2; exit 2
fi
scenarios=("$@")
((${#scenarios[@]})) || scenarios=(risk risk-latency risk-down risk-floor market ledger)
for s in "${scenarios[@]}"; do
  case $s in
    risk | risk-latency | risk-down | risk-floor | market | ledger) ;;
    *) echo "loadtest: unknown scenario $s (risk, risk-latency, risk-down, risk-floor, market, ledger)" >&2; exit 2 ;;
  esac
done

mkdir -p "$LT_DIR"
echo "loadtest: results in $LT_DIR" >&2

# ---------------------------------------------------------------- tools
if [[ -z ${FLUXO_BIN:-} || -z ${LOADTEST_BIN:-} ]]; then
  echo "loadtest: building (release)" >&2
  cargo build --release --bin fluxo >&2
  LOADTEST_BIN=$(cargo bench --no-run --bench loadtest --message-format=json 2>/dev/null |
    "$PYTHON" -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "loadtest" and m.get("executable"):
        print(m["executable"])')
  FLUXO_BIN=$(cargo metadata --format-version 1 --no-deps |
    "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/fluxo
fi
[[ -x $FLUXO_BIN && -x $LOADTEST_BIN ]] || { echo "loadtest: no fluxo ($FLUXO_BIN) or loadtest ($LOADTEST_BIN) binary" >&2; exit 2; }
VENV=${VENV:-$HOME/.cache/fluxo/loadtest-venv}
if ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
  echo "loadtest: installing matplotlib into $VENV" >&2
  "$PYTHON" -m venv "$VENV" && "$VENV/bin/pip" install -q 'matplotlib>=3.7,<4' >&2
fi

# ---------------------------------------------------------------- helpers
now_ms() { date +%s%3N; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
cpu_s() {
  [[ -r /proc/$1/stat ]] || { echo 0; return; }
  awk -v t="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / t }' "/proc/$1/stat"
}
cpu_delta() { awk -v a="$1" -v b="$(cpu_s "$2")" 'BEGIN { printf "%.2f", b - a }'; }   # CPU0 PID
hwm_mib() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# metric_sum NAME PROCESSOR [TOPIC]: sum over the series of NAME for PROCESSOR (and TOPIC)
metric_sum() {
  curl -sf --max-time 5 "http://$HTTP/metrics" | awk -v n="$1{" -v p="processor=\"$2\"" -v t="topic=\"${3:-}\"" '
    index($0, n) == 1 && index($0, p) && (t == "topic=\"\"" || index($0, t)) { s += $NF } END { printf "%d", s }'
}
listening() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
wait_ready() {  # LOG PID HTTP_ADDR
  local waited=0
  until grep -q '^ready' "$1" 2>/dev/null || curl -sf --max-time 1 "http://$3/readyz" >/dev/null 2>&1; do
    kill -0 "$2" 2>/dev/null || { echo "loadtest: exited before ready:" >&2; tail -20 "$1" >&2; exit 1; }
    sleep 0.2; waited=$((waited + 1))
    ((waited < 1500)) || { echo "loadtest: not ready after 300 s" >&2; exit 1; }
  done
}
# wait_positioned LOG PID: until the passthrough or tap says its consumer has fixed offsets
wait_positioned() {
  local waited=0
  until grep -q '^loadtest: positioned' "$1" 2>/dev/null; do
    kill -0 "$2" 2>/dev/null || { echo "loadtest: exited before positioned:" >&2; tail -5 "$1" >&2; return 1; }
    sleep 0.1; waited=$((waited + 1))
    ((waited < 600)) || { echo "loadtest: not positioned after 60 s" >&2; return 1; }
  done
}
json_line() { printf '%s\n' "$1" >>"$RESULTS"; }
# is_broker PID: PID is a Kafka broker JVM (not a recycled pid)
is_broker() { [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q 'kafka\.Kafka'; }
# stop_broker PID: `fluxo up` stops its broker when it stops; this stops one it left behind
stop_broker() {
  local i
  for ((i = 0; i < 100; i++)); do is_broker "$1" || return 0; sleep 0.1; done
  echo "loadtest: the broker (pid $1) outlived fluxo up; stopping it" >&2
  kill -TERM "$1" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do is_broker "$1" || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}

INFRA_PID='' BROKER_PID='' BROKER_VERSION='' RUN_PID='' SAMPLER_PID='' SCEN_DIR='' RUN_T0='' BROKER_CPU0=''
SCEN_GUARANTEE='' SCEN_FETCH_WAIT='' SCEN_FETCH_WAIT_MS='' SCEN_IDEMPOTENT='' SCEN_SETTINGS=''
PT_PID='' TAP_PID=''
BG_PIDS=()

# start_infra NAME GUARANTEE [EXTRA_TOML]: broker + registry + topics, and the topology of
# `fluxo run` (only the processors of RUN_PROCS)
start_infra() {
  local name=$1 extra=${3:-}
  SCEN_DIR=$LT_DIR/$name
  rm -rf "$SCEN_DIR"; mkdir -p "$SCEN_DIR"
  local topo=$SCEN_DIR/topology.toml
  cp "$TOPOLOGY" "$topo"
  runtime_set "$topo" processing_guarantee "\"$2\""
  [[ -z $FETCH_WAIT ]] || runtime_set "$topo" fetch_wait_max "\"$FETCH_WAIT\""
  SCEN_GUARANTEE=$2
  SCEN_FETCH_WAIT=$(runtime_get "$topo" fetch_wait_max); SCEN_FETCH_WAIT=${SCEN_FETCH_WAIT:-100ms}
  SCEN_FETCH_WAIT_MS=$(to_ms "$SCEN_FETCH_WAIT")
  SCEN_IDEMPOTENT=$(runtime_get "$topo" idempotent_producer); SCEN_IDEMPOTENT=${SCEN_IDEMPOTENT:-true}
  local assignment interval
  assignment=$(runtime_get "$topo" assignment); interval=$(runtime_get "$topo" checkpoint_interval)
  SCEN_SETTINGS="\"guarantee\":\"$SCEN_GUARANTEE\",\"fetch_wait\":\"$SCEN_FETCH_WAIT\",\"idempotent_producer\":${SCEN_IDEMPOTENT},\"assignment\":\"${assignment:-group}\",\"checkpoint_interval\":\"${interval:-200ms}\""
  [[ -n $extra ]] && printf '\n%s\n' "$extra" >>"$topo"
  # The passthrough's input topics: like the processors' inputs, read by no processor.
  local t schema
  for t in transactions asset-prices ledger-entries; do
    schema=$(awk -v h="[topics.$t]" '$0 == h { f = 1; next } f && /^schema/ { gsub(/[" ]/, "", $0); sub(/schema=/, ""); print; exit }' "$topo")
    printf '\n[topics.pt-%s]\nschema = "%s"\npartitions = 3\n' "$t" "$schema" >>"$SCEN_DIR/topics.toml"
  done
  cat "$SCEN_DIR/topics.toml" >>"$topo"
  # `fluxo run` runs only the processors under test: on two cores, idle processors would take
  # CPU (polls, checkpoints, transactions) from the one measured.
  awk -v keep=" $RUN_PROCS " '
    /^\[/ { k = 1; if ($0 ~ /^\[processors\./) { n = $0; sub(/^\[processors\./, "", n); sub(/[].].*/, "", n); k = index(keep, " " n " ") > 0 } }
    k' "$topo" >"$SCEN_DIR/run.toml" && mv "$SCEN_DIR/run.toml" "$topo"
  # The infrastructure topology: everything up to the processors, and the passthrough's topics.
  awk '/^\[processors\./ { exit } { print }' "$topo" >"$SCEN_DIR/infra.toml"
  cat "$SCEN_DIR/topics.toml" >>"$SCEN_DIR/infra.toml"

  for addr in "$BROKER" "${REGISTRY#http://}" "$INFRA_HTTP" "$HTTP"; do
    if listening "$addr"; then echo "loadtest: something already listens on $addr; pick other ports" >&2; exit 1; fi
  done
  export FLUXO_BOOTSTRAP_SERVERS=$BROKER FLUXO_SCHEMA_REGISTRY_URL=$REGISTRY
  local t0; t0=$(now_ms)
  FLUXO_HTTP_ADDR=$INFRA_HTTP FLUXO_DATA_DIR=$SCEN_DIR/infra \
    "$FLUXO_BIN" --topology "$SCEN_DIR/infra.toml" up >"$SCEN_DIR/infra.log" 2>&1 &
  INFRA_PID=$!
  wait_ready "$SCEN_DIR/infra.log" "$INFRA_PID" "$INFRA_HTTP"
  BROKER_PID=$(cat "$SCEN_DIR/infra/kafka/kafka.pid" 2>/dev/null || true)
  is_broker "${BROKER_PID:-0}" || { echo "loadtest: $name: no broker JVM in $SCEN_DIR/infra/kafka/kafka.pid" >&2; BROKER_PID=; }
  BROKER_VERSION=$(tr '\0' '\n' <"/proc/${BROKER_PID:-0}/cmdline" 2>/dev/null | sed -n 's|.*/kafka-\([0-9][^/]*\)/lib.*|\1|p' | head -1 || true)
  echo "loadtest: $name: Kafka ${BROKER_VERSION:-?} (pid ${BROKER_PID:-?}) and registry up in $(( ($(now_ms) - t0) / 1000 )) s; $SCEN_GUARANTEE, fetch_wait_max $SCEN_FETCH_WAIT" >&2
  warm_up "$name"
}

start_run() {
  local name=$1
  RUN_T0=$(now_ms); BROKER_CPU0=$(cpu_s "${BROKER_PID:-0}")
  FLUXO_HTTP_ADDR=$HTTP FLUXO_DATA_DIR=$SCEN_DIR/run \
    "$FLUXO_BIN" --topology "$SCEN_DIR/topology.toml" run >"$SCEN_DIR/run.log" 2>&1 &
  RUN_PID=$!
  until curl -sf --max-time 1 "http://$HTTP/metrics" >/dev/null 2>&1; do
    kill -0 "$RUN_PID" 2>/dev/null || { echo "loadtest: fluxo run exited:" >&2; tail -20 "$SCEN_DIR/run.log" >&2; exit 1; }
    sleep 0.1
  done
  "$PYTHON" "$ROOT/benches/loadtest_sample.py" "http://$HTTP/metrics" "$RUN_PID" "${BROKER_PID:-}" \
    "$SCEN_DIR/samples.jsonl" "$SAMPLE_S" &
  SAMPLER_PID=$!
  echo "loadtest: $name: fluxo run started (pid $RUN_PID)" >&2
}

stop_run() {
  local name=$1
  if [[ -n $RUN_PID ]]; then
    local cpu hwm bcpu rc=0; cpu=$(cpu_s "$RUN_PID"); hwm=$(hwm_mib "$RUN_PID")
    bcpu=$(cpu_delta "$BROKER_CPU0" "${BROKER_PID:-0}")
    kill -TERM "$RUN_PID" 2>/dev/null || true
    wait "$RUN_PID" || rc=$?
    local errors; errors=$(grep -c -E '"level":"(ERROR|WARN)"|^fluxo: (error|warning)| (ERROR|WARN) ' "$SCEN_DIR/run.log" || true)
    json_line "{\"kind\":\"instance\",\"scenario\":\"$name\",$SCEN_SETTINGS,\"broker\":\"Apache Kafka ${BROKER_VERSION:-?}\",\"fluxo_cpu_s\":$cpu,\"fluxo_hwm_mib\":$hwm,\"broker_cpu_s\":$bcpu,\"broker_hwm_mib\":$(hwm_mib "${BROKER_PID:-0}"),\"exit\":$rc,\"log_warnings\":${errors:-0},\"log\":\"$SCEN_DIR/run.log\",\"samples\":\"$SCEN_DIR/samples.jsonl\",\"run_t0_ms\":$RUN_T0}"
    echo "loadtest: $name: fluxo run stopped (exit $rc), ${cpu} CPU-s, peak RSS ${hwm} MiB; ${errors:-0} warning/error lines in its log" >&2
    RUN_PID=
  fi
  if [[ -n $SAMPLER_PID ]]; then kill -TERM "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=; fi
}

stop_all() {
  stop_run "${1:-aborted}"
  local p
  for p in "${BG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  BG_PIDS=()
  if [[ -n $INFRA_PID ]]; then
    kill -TERM "$INFRA_PID" 2>/dev/null || true
    wait "$INFRA_PID" 2>/dev/null || true
    INFRA_PID=
  fi
  if [[ -n $BROKER_PID ]]; then stop_broker "$BROKER_PID"; BROKER_PID=; fi
}
trap 'stop_all aborted' EXIT
trap 'exit 130' INT TERM

# produce SIM COUNT [RATE] [TOPIC]: sets ACKED (records acknowledged) and PRODUCE_LOG; wall user sys
# into $SCEN_DIR/last.time
produce() {
  local sim=$1 n=$2 rate=${3:-} topic=${4:-} TIMEFORMAT='%R %U %S' rc=0
  SEED=$((SEED + 1))
  { time "$FLUXO_BIN" --topology "$SCEN_DIR/topology.toml" produce --simulate "$sim" --count "$n" \
      --seed "$SEED" ${rate:+--rate "$rate"} ${topic:+--topic "$topic"} 2>"$SCEN_DIR/produce.err"; } 2>"$SCEN_DIR/last.time" || rc=$?
  ((rc == 0)) || echo "loadtest: fluxo produce exited $rc: $(grep '^fluxo: error' "$SCEN_DIR/produce.err")" >&2
  PRODUCE_LOG=$(grep '^produced' "$SCEN_DIR/produce.err" | tr -d '"' || true)
  ACKED=$(sed -n 's/^produced \([0-9]*\) of .*/\1/p' "$SCEN_DIR/produce.err" | tail -1)
  ACKED=${ACKED:-0}
}

# wait_assigned PROCESSOR...: until each has its partitions, then 2 s for the first fetches
wait_assigned() {
  local p deadline=$(( $(date +%s) + TIMEOUT ))
  for p in "$@"; do
    until (( $(metric_sum fluxo_assigned_partitions "$p") > 0 )); do
      (( $(date +%s) < deadline )) || { echo "loadtest: $p has no partitions" >&2; break; }
      sleep 0.2
    done
  done
  sleep 2
}

# passthrough FROM TO N TIMEOUT_S OUT [EXPECT_FILE]: the raw passthrough in the background
# (PT_PID), positioned at the end of FROM when it returns
passthrough() {
  "$LOADTEST_BIN" passthrough --bootstrap "$BROKER" --from "$1" --to "$2" --start end \
    --expect "$3" ${6:+--expect-file "$6"} --fetch-wait-ms "$SCEN_FETCH_WAIT_MS" \
    --idempotent "$SCEN_IDEMPOTENT" --timeout-s "$4" >"$5" 2>"$5.log" &
  PT_PID=$!; BG_PIDS+=("$PT_PID")
  wait_positioned "$5.log" "$PT_PID" || true
}

# tap OUTPUT SINCE_MS N TIMEOUT_S OUT EXPECT_FILE: the latency tap in the background (TAP_PID),
# reading transactions and OUTPUT, positioned when it returns
tap() {
  "$LOADTEST_BIN" tap --bootstrap "$BROKER" --input transactions --output "$1" --since-ms "$2" \
    --expect "$3" --expect-file "$6" --out "$5" --timeout-s "$4" 2>"$5.log" &
  TAP_PID=$!; BG_PIDS+=("$TAP_PID")
  wait_positioned "$5.log" "$TAP_PID" || true
}

# warm_up NAME: paced records through the passthrough (pt-transactions -> pt-transactions.warmup)
# on the fresh broker, so that its JVM has compiled its produce and fetch paths before anything
# is measured (a cold broker took about a third more CPU for the same paced load)
warm_up() {
  [[ $WARMUP == *:* ]] || return 0
  local rate=${WARMUP%:*} n=${WARMUP#*:} t0; t0=$(now_ms)
  passthrough pt-transactions pt-transactions.warmup "$n" $((n / rate + TIMEOUT)) "$SCEN_DIR/warmup.json"
  produce transactions "$n" "$rate" pt-transactions
  wait "$PT_PID" || echo "loadtest: $1: warm-up passthrough failed: $(tail -1 "$SCEN_DIR/warmup.json.log")" >&2
  BG_PIDS=()
  echo "loadtest: $1: broker warmed up ($n records at $rate/s in $(( ($(now_ms) - t0) / 1000 )) s)" >&2
}

# throughput SCENARIO SIM INPUT PROCESSOR...: the passthrough, then fluxo, each fed THROUGHPUT_N
# records by `fluxo produce` flat out while it runs
throughput() {
  local name=$1 sim=$2 input=$3; shift 3
  local procs=("$@") p
  local load0; load0=$(loadavg)
  local b0; b0=$(cpu_s "${BROKER_PID:-0}")
  passthrough "pt-$input" "pt-$input.out" "$THROUGHPUT_N" "$TIMEOUT" "$SCEN_DIR/passthrough.json"
  echo "loadtest: $name: passthrough pt-$input -> pt-$input.out, $THROUGHPUT_N $sim records flat out" >&2
  local pt_t0; pt_t0=$(now_ms)
  produce "$sim" "$THROUGHPUT_N" "" "pt-$input"
  wait "$PT_PID" || echo "loadtest: $name: passthrough failed: $(tail -1 "$SCEN_DIR/passthrough.json.log")" >&2
  BG_PIDS=()
  local pt; pt=$(grep . "$SCEN_DIR/passthrough.json" || echo null)
  json_line "{\"kind\":\"passthrough\",\"scenario\":\"$name\",$SCEN_SETTINGS,\"input\":\"pt-$input\",\"producer_t0_ms\":$pt_t0,\"acked\":$ACKED,\"broker_cpu_s\":$(cpu_delta "$b0" "${BROKER_PID:-0}"),\"load\":\"$load0 / $(loadavg)\",\"produce\":\"$(cat "$SCEN_DIR/last.time")\",\"produce_log\":\"$PRODUCE_LOG\",\"result\":$pt}"
  echo "loadtest: $name: passthrough $pt" >&2

  start_run "$name"
  wait_assigned "${procs[@]}"
  local -A first done_ms
  local f0 pending=${#procs[@]} load1; load1=$(loadavg)
  f0=$(cpu_s "$RUN_PID"); b0=$(cpu_s "${BROKER_PID:-0}")
  echo "loadtest: $name: fluxo ($SCEN_GUARANTEE), $THROUGHPUT_N $sim records flat out into $input" >&2
  local run_t0; run_t0=$(now_ms)
  produce "$sim" "$THROUGHPUT_N" &
  local prod_pid=$!
  SEED=$((SEED + 1))   # produce ran in a subshell: keep the next seed new
  local deadline=$(( $(date +%s) + TIMEOUT ))
  while ((pending > 0)); do
    (( $(date +%s) < deadline )) || { echo "loadtest: $name: fluxo did not finish in ${TIMEOUT}s" >&2; break; }
    local now; now=$(now_ms)
    for p in "${procs[@]}"; do
      [[ -n ${done_ms[$p]:-} ]] && continue
      if [[ -z ${first[$p]:-} ]] && (( $(metric_sum fluxo_records_in_total "$p" "$input") > 0 )); then first[$p]=$now; fi
      if (( $(metric_sum fluxo_checkpointed_offset "$p" "$input") >= THROUGHPUT_N )); then
        done_ms[$p]=$now; pending=$((pending - 1))
        echo "loadtest: $name: $p checkpointed all $THROUGHPUT_N records after $(( now - run_t0 )) ms" >&2
      fi
    done
    sleep 0.1
  done
  wait "$prod_pid" || true
  PRODUCE_LOG=$(grep '^produced' "$SCEN_DIR/produce.err" | tr -d '"' || true)
  local out=""
  for p in "${procs[@]}"; do
    out+="${out:+,}\"$p\":{\"first_in_ms\":${first[$p]:-0},\"done_ms\":${done_ms[$p]:--1}}"
  done
  json_line "{\"kind\":\"drain\",\"scenario\":\"$name\",$SCEN_SETTINGS,\"input\":\"$input\",\"records\":$THROUGHPUT_N,\"producer_t0_ms\":$run_t0,\"processors\":{$out},\"fluxo_cpu_s\":$(cpu_delta "$f0" "$RUN_PID"),\"broker_cpu_s\":$(cpu_delta "$b0" "${BROKER_PID:-0}"),\"load\":\"$load1 / $(loadavg)\",\"produce\":\"$(cat "$SCEN_DIR/last.time")\",\"produce_log\":\"$PRODUCE_LOG\"}"
}

# live SCENARIO "rate:count ..." : paced transactions into a running risk-scoring, measured by a
# tap that runs while they are produced
live() {
  local name=$1 runs=$2 run rate n k=0
  for run in $runs; do
    rate=${run%:*}; n=${run#*:}; k=$((k + 1))
    local load0 f0 b0 t_start; load0=$(loadavg); f0=$(cpu_s "$RUN_PID"); b0=$(cpu_s "${BROKER_PID:-0}")
    local tag=$k-$rate   # run number and rate: the files of this run
    curl -sf --max-time 5 "http://$HTTP/metrics" >"$SCEN_DIR/metrics-$tag-before.txt" || true
    local tap_out=$SCEN_DIR/tap-$tag.json expect=$SCEN_DIR/tap-$tag.expect
    t_start=$(now_ms)
    tap risk-decisions "$t_start" "$n" $((n / rate + TIMEOUT)) "$tap_out" "$expect"
    echo "loadtest: $name: $n transactions at $rate/s" >&2
    produce transactions "$n" "$rate"; local acked=$ACKED
    echo "$acked" >"$expect"
    local t_prod; t_prod=$(now_ms)
    wait "$TAP_PID" || echo "loadtest: $name: tap failed: $(tail -1 "$tap_out.log")" >&2
    BG_PIDS=()
    echo "loadtest: $name: last decision $(( $(now_ms) - t_prod )) ms after the producer finished (tap: $(grep -o '"complete":[a-z]*' "$tap_out" 2>/dev/null))" >&2
    curl -sf --max-time 5 "http://$HTTP/metrics" >"$SCEN_DIR/metrics-$tag.txt" || true
    json_line "{\"kind\":\"live\",\"scenario\":\"$name\",$SCEN_SETTINGS,\"rate\":$rate,\"count\":$n,\"acked\":$acked,\"t_start_ms\":$t_start,\"t_produced_ms\":$t_prod,\"tap\":\"$tap_out\",\"metrics\":\"$SCEN_DIR/metrics-$tag.txt\",\"metrics_before\":\"$SCEN_DIR/metrics-$tag-before.txt\",\"fluxo_cpu_s\":$(cpu_delta "$f0" "$RUN_PID"),\"broker_cpu_s\":$(cpu_delta "$b0" "${BROKER_PID:-0}"),\"load\":\"$load0 / $(loadavg)\",\"produce\":\"$(cat "$SCEN_DIR/last.time")\",\"produce_log\":\"$PRODUCE_LOG\"}"
  done
}

# floor SCENARIO "rate:count ...": the passthrough alone (fluxo not running) at the same paced
# rates, from the end of transactions to transactions.floor: the broker's and client settings'
# own latency
floor() {
  local name=$1 runs=$2 run rate n k=0
  for run in $runs; do
    rate=${run%:*}; n=${run#*:}; k=$((k + 1))
    local out=$SCEN_DIR/floor-$k-$rate.json expect=$SCEN_DIR/floor-$k-$rate.expect load0 b0 t_start
    load0=$(loadavg); b0=$(cpu_s "${BROKER_PID:-0}")
    passthrough transactions transactions.floor "$n" $((n / rate + TIMEOUT)) "$out" "$expect"
    local pt_pid=$PT_PID tap_out=$SCEN_DIR/tap-floor-$k-$rate.json
    t_start=$(now_ms)
    tap transactions.floor "$t_start" "$n" $((n / rate + TIMEOUT)) "$tap_out" "$expect"
    echo "loadtest: $name: passthrough alone, $n transactions at $rate/s" >&2
    produce transactions "$n" "$rate"; local acked=$ACKED
    echo "$acked" >"$expect"
    wait "$pt_pid" || echo "loadtest: $name: passthrough failed: $(tail -1 "$out.log")" >&2
    wait "$TAP_PID" || echo "loadtest: $name: tap failed: $(tail -1 "$tap_out.log")" >&2
    BG_PIDS=()
    json_line "{\"kind\":\"floor\",\"scenario\":\"$name (passthrough)\",$SCEN_SETTINGS,\"rate\":$rate,\"count\":$n,\"acked\":$acked,\"t_start_ms\":$t_start,\"tap\":\"$tap_out\",\"result\":$(grep . "$out" 2>/dev/null || echo null),\"broker_cpu_s\":$(cpu_delta "$b0" "${BROKER_PID:-0}"),\"load\":\"$load0 / $(loadavg)\",\"produce\":\"$(cat "$SCEN_DIR/last.time")\",\"produce_log\":\"$PRODUCE_LOG\"}"
  done
}

# instance SCENARIO GUARANTEE: its name (the guarantee appended when GUARANTEE lists several)
instance() { if ((${#GUARANTEES[@]} > 1)); then echo "$1-$2"; else echo "$1"; fi; }

json_line "{\"kind\":\"run\",\"date\":\"$(date -u +%FT%TZ)\",\"host\":\"$(nproc) CPU $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)\",\"command\":\"benches/loadtest.sh ${scenarios[*]}\",\"guarantees\":\"${GUARANTEES[*]}\",\"fetch_wait\":\"${FETCH_WAIT:-topology}\",\"throughput_n\":$THROUGHPUT_N,\"warmup\":\"$WARMUP\",\"fluxo\":\"$("$FLUXO_BIN" --version 2>/dev/null | head -1) $(git -C "$ROOT" describe --always --dirty 2>/dev/null || true)\",\"uptime\":\"$(uptime)\"}"
for s in "${scenarios[@]}"; do
  for g in "${GUARANTEES[@]}"; do
    name=$(instance "$s" "$g")
    case $s in
      risk)
        RUN_PROCS=risk-scoring
        start_infra "$name" "$g"
        throughput "$name" transactions transactions risk-scoring ;;
      risk-latency | risk-down)
        RUN_PROCS=risk-scoring
        if [[ $s == risk-down ]]; then
          start_infra "$name" "$g" "[processors.risk-scoring.params.external]
url = \"$VALIDATOR_URL\""
          runs=$DOWN_RUNS
        else
          start_infra "$name" "$g"
          runs=$RISK_RUNS
        fi
        start_run "$name"
        wait_assigned risk-scoring
        live "$name" "$runs" ;;
      risk-floor)
        # fluxo does not run: one instance whatever the guarantees
        [[ $g == "${GUARANTEES[0]}" ]] || continue
        RUN_PROCS=risk-scoring
        start_infra risk-floor "$g"
        floor risk-floor "$FLOOR_RUNS" ;;
      market)
        RUN_PROCS="price-change below-average"
        start_infra "$name" "$g"
        throughput "$name" prices asset-prices price-change below-average ;;
      ledger)
        RUN_PROCS=daily-consolidation
        start_infra "$name" "$g"
        throughput "$name" ledger ledger-entries daily-consolidation ;;
    esac
    stop_all "$name"
  done
done
trap - EXIT
"$VENV/bin/python" "$ROOT/benches/loadtest_report.py" "$RESULTS" >"$LT_DIR/report.md"
echo "loadtest: report in $LT_DIR/report.md" >&2
