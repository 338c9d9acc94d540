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
# Every instance gets a fresh broker and data directories (Tansu slows down as its topics
# fill, so instances that share a broker would measure its history):
#   infra: `fluxo up` with a topology without processors = Tansu + embedded registry + every
#   topic (non-default ports, so it never meets a developer's own `fluxo up`); `fluxo run` (the
#   processors alone, fresh state) runs only the scenario's processors.
#   risk, market, ledger (throughput): first the passthrough (benches/loadtest.rs) alone,
#      reading `pt-<input>` (a copy of the input topic's declaration, read by no processor) and
#      writing `pt-<input>.out`, while `fluxo produce --simulate` sends THROUGHPUT_N records
#      into it flat out; then `fluxo run` while the same producer sends THROUGHPUT_N records
#      into the input topic. End-to-end throughput of each = records / (last acknowledged
#      (passthrough) or checkpointed (fluxo) - producer start); fluxo's times come from
#      polling its /metrics every 0.1 s.
#   risk-latency, risk-down (one instance per rate:count of RISK_RUNS / DOWN_RUNS):
#      `fluxo produce --simulate transactions --rate R`; the tap (benches/loadtest.rs) joins
#      every decision to its transaction and records event time -> output latency in an HDR
#      histogram. risk-down configures the external validator at VALIDATOR_URL, where nothing
#      listens.
#   risk-floor (one instance per rate:count of FLOOR_RUNS): the passthrough alone forwards
#      paced transactions, measured by the same tap: the latency floor of broker and settings.
#   Throughout, benches/loadtest_sample.py samples fluxo's /metrics (records in/out, consumer
#   lag, checkpointed offsets) and /proc (CPU, RSS of fluxo and Tansu) every SAMPLE_S seconds.
#
# Environment (defaults in brackets):
#   LT_DIR [benches/reports/loadtest-<UTC time>] (git-ignored)   TOPOLOGY [topology.toml]
#   FLUXO_BIN, LOADTEST_BIN [built by the script]   PYTHON [python3, for the venv]
#   BROKER [127.0.0.1:39092]  REGISTRY [http://127.0.0.1:38081]
#   INFRA_HTTP [127.0.0.1:38079]  HTTP [127.0.0.1:38080] (the `fluxo run` under test)
#   THROUGHPUT_N [10000]                 records per throughput phase
#   RISK_RUNS ["500:5000 1000:10000 2500:12500 5000:25000"]   rate:count of risk-latency
#   DOWN_RUNS ["1000:10000 5000:25000"]  the same for risk-down
#   RISK_FETCH_WAIT [10ms]               fetch_wait_max of risk and risk-down (fluxo and
#                                        passthrough); Tansu answers a fetch only when it ends
#   THROUGHPUT_FETCH_WAIT [the topology's, 100ms]    the same for market and ledger
#   FLOOR_RUNS ["1000:10000 5000:25000"] rate:count of risk-floor
#   VALIDATOR_URL [http://127.0.0.1:9]   SAMPLE_S [1]   TIMEOUT [120] seconds per wait
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
LT_DIR=${LT_DIR:-$ROOT/benches/reports/loadtest-$(date -u +%Y%m%dT%H%M%SZ)}
TOPOLOGY=${TOPOLOGY:-$ROOT/topology.toml}
BROKER=${BROKER:-127.0.0.1:39092}
REGISTRY=${REGISTRY:-http://127.0.0.1:38081}
INFRA_HTTP=${INFRA_HTTP:-127.0.0.1:38079}
HTTP=${HTTP:-127.0.0.1:38080}
THROUGHPUT_N=${THROUGHPUT_N:-10000}
RISK_RUNS=${RISK_RUNS:-"500:5000 1000:10000 2500:12500 5000:25000"}
DOWN_RUNS=${DOWN_RUNS:-"1000:10000 5000:25000"}
RISK_FETCH_WAIT=${RISK_FETCH_WAIT:-10ms}
THROUGHPUT_FETCH_WAIT=${THROUGHPUT_FETCH_WAIT:-}
VALIDATOR_URL=${VALIDATOR_URL:-http://127.0.0.1:9}
FLOOR_RUNS=${FLOOR_RUNS:-"1000:10000 5000:25000"}
SAMPLE_S=${SAMPLE_S:-1}
TIMEOUT=${TIMEOUT:-120}
PYTHON=${PYTHON:-python3}
RESULTS=$LT_DIR/results.jsonl
SEED=41

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
hwm_mib() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# metric_sum NAME PROCESSOR [TOPIC]: sum over the series of NAME for PROCESSOR (and TOPIC)
metric_sum() {
  curl -sf --max-time 5 "http://$HTTP/metrics" | awk -v n="$1{" -v p="processor=\"$2\"" -v t="topic=\"${3:-}\"" '
    index($0, n) == 1 && index($0, p) && (t == "topic=\"\"" || index($0, t)) { s += $NF } END { printf "%d", s }'
}
listening() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
wait_ready() {  # LOG PID
  local waited=0
  until grep -q '^ready' "$1" 2>/dev/null || curl -sf --max-time 1 "http://$3/readyz" >/dev/null 2>&1; do
    kill -0 "$2" 2>/dev/null || { echo "loadtest: exited before ready:" >&2; tail -20 "$1" >&2; exit 1; }
    sleep 0.2; waited=$((waited + 1))
    ((waited < 1500)) || { echo "loadtest: not ready after 300 s" >&2; exit 1; }
  done
}
json_line() { printf '%s\n' "$1" >>"$RESULTS"; }

INFRA_PID= TANSU_PID= RUN_PID= SAMPLER_PID= SCEN_DIR= FETCH_WAIT=

# start_infra NAME FETCH_WAIT [EXTRA_TOML]: broker + registry + topics, and the topology of `fluxo run`
start_infra() {
  local name=$1 extra=${3:-}
  FETCH_WAIT=$2
  SCEN_DIR=$LT_DIR/$name
  rm -rf "$SCEN_DIR"; mkdir -p "$SCEN_DIR"
  cp "$TOPOLOGY" "$SCEN_DIR/topology.toml"
  if [[ -n $FETCH_WAIT ]]; then
    sed -i "s/^fetch_wait_max = .*/fetch_wait_max = \"$FETCH_WAIT\"/" "$SCEN_DIR/topology.toml"
  fi
  FETCH_WAIT=$(sed -n 's/^fetch_wait_max = "\(.*\)".*/\1/p' "$SCEN_DIR/topology.toml")
  [[ -n $extra ]] && printf '\n%s\n' "$extra" >>"$SCEN_DIR/topology.toml"
  # The passthrough's input topics: like the processors' inputs, read by no processor.
  local t schema
  for t in transactions asset-prices ledger-entries; do
    schema=$(awk -v h="[topics.$t]" '$0 == h { f = 1; next } f && /^schema/ { gsub(/[" ]/, "", $0); sub(/schema=/, ""); print; exit }' "$SCEN_DIR/topology.toml")
    printf '\n[topics.pt-%s]\nschema = "%s"\npartitions = 3\n' "$t" "$schema" >>"$SCEN_DIR/topics.toml"
  done
  cat "$SCEN_DIR/topics.toml" >>"$SCEN_DIR/topology.toml"
  # `fluxo run` runs only the processors under test: every idle consumer polls Tansu every
  # fetch_wait_max, and Tansu's produce path stalls under that extra load.
  awk -v keep=" $RUN_PROCS " '
    /^\[/ { k = 1; if ($0 ~ /^\[processors\./) { n = $0; sub(/^\[processors\./, "", n); sub(/[].].*/, "", n); k = index(keep, " " n " ") > 0 } }
    k' "$SCEN_DIR/topology.toml" >"$SCEN_DIR/run.toml" && mv "$SCEN_DIR/run.toml" "$SCEN_DIR/topology.toml"
  # The infrastructure topology: everything up to the processors, and the passthrough's topics.
  awk '/^\[processors\./ { exit } { print }' "$SCEN_DIR/topology.toml" >"$SCEN_DIR/infra.toml"
  cat "$SCEN_DIR/topics.toml" >>"$SCEN_DIR/infra.toml"

  for addr in "$BROKER" "${REGISTRY#http://}" "$INFRA_HTTP" "$HTTP"; do
    if listening "$addr"; then echo "loadtest: something already listens on $addr; pick other ports" >&2; exit 1; fi
  done
  export FLUXO_BOOTSTRAP_SERVERS=$BROKER FLUXO_SCHEMA_REGISTRY_URL=$REGISTRY
  FLUXO_HTTP_ADDR=$INFRA_HTTP FLUXO_DATA_DIR=$SCEN_DIR/infra \
    "$FLUXO_BIN" --topology "$SCEN_DIR/infra.toml" up >"$SCEN_DIR/infra.log" 2>&1 &
  INFRA_PID=$!
  wait_ready "$SCEN_DIR/infra.log" "$INFRA_PID" "$INFRA_HTTP"
  TANSU_PID=$(ps -o pid=,comm= --ppid "$INFRA_PID" | awk '$2 == "tansu" { print $1 }' | head -1)
  echo "loadtest: $name: broker and registry up (tansu pid ${TANSU_PID:-?}), fetch_wait_max $FETCH_WAIT" >&2
}

start_run() {
  local name=$1
  RUN_T0=$(now_ms)
  FLUXO_HTTP_ADDR=$HTTP FLUXO_DATA_DIR=$SCEN_DIR/run \
    "$FLUXO_BIN" --topology "$SCEN_DIR/topology.toml" run >"$SCEN_DIR/run.log" 2>&1 &
  RUN_PID=$!
  until curl -sf --max-time 1 "http://$HTTP/metrics" >/dev/null 2>&1; do
    kill -0 "$RUN_PID" 2>/dev/null || { echo "loadtest: fluxo run exited:" >&2; tail -20 "$SCEN_DIR/run.log" >&2; exit 1; }
    sleep 0.1
  done
  "$PYTHON" "$ROOT/benches/loadtest_sample.py" "http://$HTTP/metrics" "$RUN_PID" "${TANSU_PID:-}" \
    "$SCEN_DIR/samples.jsonl" "$SAMPLE_S" &
  SAMPLER_PID=$!
  echo "loadtest: $name: fluxo run started (pid $RUN_PID)" >&2
}

stop_run() {
  local name=$1
  if [[ -n $RUN_PID ]]; then
    local cpu hwm rc=0; cpu=$(cpu_s "$RUN_PID"); hwm=$(hwm_mib "$RUN_PID")
    kill -TERM "$RUN_PID" 2>/dev/null || true
    wait "$RUN_PID" || rc=$?
    json_line "{\"kind\":\"instance\",\"scenario\":\"$name\",\"fluxo_cpu_s\":$cpu,\"fluxo_hwm_mib\":$hwm,\"tansu_cpu_s\":$(cpu_s "${TANSU_PID:-0}"),\"tansu_hwm_mib\":$(hwm_mib "${TANSU_PID:-0}"),\"exit\":$rc,\"fetch_wait\":\"$FETCH_WAIT\",\"samples\":\"$SCEN_DIR/samples.jsonl\",\"run_t0_ms\":$RUN_T0}"
    echo "loadtest: $name: fluxo run stopped (exit $rc), ${cpu} CPU-s, peak RSS ${hwm} MiB" >&2
    RUN_PID=
  fi
  if [[ -n $SAMPLER_PID ]]; then kill -TERM "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=; fi
}

stop_all() {
  stop_run "${1:-aborted}"
  if [[ -n $INFRA_PID ]]; then
    kill -TERM "$INFRA_PID" 2>/dev/null || true
    wait "$INFRA_PID" 2>/dev/null || true
    if [[ -n $TANSU_PID ]] && kill -0 "$TANSU_PID" 2>/dev/null; then sleep 5; kill -TERM "$TANSU_PID" 2>/dev/null || true; fi
    INFRA_PID= TANSU_PID=
  fi
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

# throughput SCENARIO SIM INPUT PROCESSOR...: the passthrough, then fluxo, each fed THROUGHPUT_N
# records by `fluxo produce` flat out while it runs
throughput() {
  local name=$1 sim=$2 input=$3; shift 3
  local procs=("$@") p
  local load0; load0=$(loadavg)
  local t0; t0=$(cpu_s "${TANSU_PID:-0}")
  "$LOADTEST_BIN" passthrough --bootstrap "$BROKER" --from "pt-$input" --to "pt-$input.out" --start end \
    --expect "$THROUGHPUT_N" --fetch-wait-ms "${FETCH_WAIT%ms}" --timeout-s "$TIMEOUT" >"$SCEN_DIR/passthrough.json" &
  local pt_pid=$!
  sleep 3   # assigned and positioned at the end before anything is produced
  echo "loadtest: $name: passthrough pt-$input -> pt-$input.out, $THROUGHPUT_N $sim records flat out" >&2
  local pt_t0; pt_t0=$(now_ms)
  produce "$sim" "$THROUGHPUT_N" "" "pt-$input"
  wait "$pt_pid" || echo "loadtest: $name: passthrough failed" >&2
  local pt; pt=$(grep . "$SCEN_DIR/passthrough.json" || echo null)
  json_line "{\"kind\":\"passthrough\",\"scenario\":\"$name\",\"input\":\"pt-$input\",\"producer_t0_ms\":$pt_t0,\"acked\":$ACKED,\"tansu_cpu_s\":$(awk -v a="$t0" -v b="$(cpu_s "${TANSU_PID:-0}")" 'BEGIN{printf "%.2f", b-a}'),\"load\":\"$load0 / $(loadavg)\",\"produce\":\"$(cat "$SCEN_DIR/last.time")\",\"produce_log\":\"$PRODUCE_LOG\",\"result\":$pt}"
  echo "loadtest: $name: passthrough $pt" >&2

  start_run "$name"
  wait_assigned "${procs[@]}"
  local -A first done_ms
  local f0 pending=${#procs[@]} load1; load1=$(loadavg)
  f0=$(cpu_s "$RUN_PID"); t0=$(cpu_s "${TANSU_PID:-0}")
  echo "loadtest: $name: fluxo, $THROUGHPUT_N $sim records flat out into $input" >&2
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
        echo "loadtest: $name: $p checkpointed all $THROUGHPUT_N records" >&2
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
  json_line "{\"kind\":\"drain\",\"scenario\":\"$name\",\"input\":\"$input\",\"records\":$THROUGHPUT_N,\"producer_t0_ms\":$run_t0,\"processors\":{$out},\"fluxo_cpu_s\":$(awk -v a="$f0" -v b="$(cpu_s "$RUN_PID")" 'BEGIN{printf "%.2f", b-a}'),\"tansu_cpu_s\":$(awk -v a="$t0" -v b="$(cpu_s "${TANSU_PID:-0}")" 'BEGIN{printf "%.2f", b-a}'),\"load\":\"$load1 / $(loadavg)\",\"produce\":\"$(cat "$SCEN_DIR/last.time")\",\"produce_log\":\"$PRODUCE_LOG\"}"
}

# live SCENARIO "rate:count ..." : paced transactions into a running risk-scoring
live() {
  local name=$1 runs=$2 run rate n
  for run in $runs; do
    rate=${run%:*}; n=${run#*:}
    local load0 f0 t0 t_start; load0=$(loadavg); f0=$(cpu_s "$RUN_PID"); t0=$(cpu_s "${TANSU_PID:-0}")
    curl -sf --max-time 5 "http://$HTTP/metrics" >"$SCEN_DIR/metrics-$rate-before.txt" || true
    t_start=$(now_ms)
    echo "loadtest: $name: $n transactions at $rate/s" >&2
    produce transactions "$n" "$rate"; local acked=$ACKED
    local t_prod; t_prod=$(now_ms)
    local tap=$SCEN_DIR/tap-$rate.json
    "$LOADTEST_BIN" tap --bootstrap "$BROKER" --input transactions --output risk-decisions \
      --since-ms "$t_start" --expect "$acked" --out "$tap" --timeout-s "$TIMEOUT" || true
    curl -sf --max-time 5 "http://$HTTP/metrics" >"$SCEN_DIR/metrics-$rate.txt" || true
    json_line "{\"kind\":\"live\",\"scenario\":\"$name\",\"rate\":$rate,\"count\":$n,\"acked\":$acked,\"t_start_ms\":$t_start,\"t_produced_ms\":$t_prod,\"tap\":\"$tap\",\"metrics\":\"$SCEN_DIR/metrics-$rate.txt\",\"metrics_before\":\"$SCEN_DIR/metrics-$rate-before.txt\",\"fluxo_cpu_s\":$(awk -v a="$f0" -v b="$(cpu_s "$RUN_PID")" 'BEGIN{printf "%.2f", b-a}'),\"tansu_cpu_s\":$(awk -v a="$t0" -v b="$(cpu_s "${TANSU_PID:-0}")" 'BEGIN{printf "%.2f", b-a}'),\"load\":\"$load0 / $(loadavg)\",\"produce\":\"$(cat "$SCEN_DIR/last.time")\",\"produce_log\":\"$PRODUCE_LOG\",\"fetch_wait\":\"$FETCH_WAIT\"}"
  done
}

# floor "rate:count ...": the passthrough alone (fluxo stopped) at the same paced rates, from the
# end of transactions to transactions.floor: the broker's own latency at this fetch_wait_max
floor() {
  local name=$1 runs=$2 run rate n
  for run in $runs; do
    rate=${run%:*}; n=${run#*:}
    local out=$SCEN_DIR/floor-$rate.json load0; load0=$(loadavg)
    "$LOADTEST_BIN" passthrough --bootstrap "$BROKER" --from transactions --to transactions.floor \
      --expect "$n" --fetch-wait-ms "${FETCH_WAIT%ms}" --start end --timeout-s "$TIMEOUT" >"$out" &
    local pt_pid=$! t0; t0=$(cpu_s "${TANSU_PID:-0}")
    sleep 3   # assigned and positioned at the end before anything is produced
    local t_start; t_start=$(now_ms)
    echo "loadtest: $name: passthrough alone, $n transactions at $rate/s" >&2
    produce transactions "$n" "$rate"; local acked=$ACKED
    wait "$pt_pid" || echo "loadtest: $name: passthrough failed" >&2
    local tap=$SCEN_DIR/tap-floor-$rate.json
    "$LOADTEST_BIN" tap --bootstrap "$BROKER" --input transactions --output transactions.floor \
      --since-ms "$t_start" --expect "$acked" --out "$tap" --timeout-s "$TIMEOUT" || true
    json_line "{\"kind\":\"floor\",\"scenario\":\"$name passthrough\",\"rate\":$rate,\"count\":$n,\"acked\":$acked,\"t_start_ms\":$t_start,\"tap\":\"$tap\",\"result\":$(cat "$out" 2>/dev/null | grep . || echo null),\"tansu_cpu_s\":$(awk -v a="$t0" -v b="$(cpu_s "${TANSU_PID:-0}")" 'BEGIN{printf "%.2f", b-a}'),\"load\":\"$load0 / $(loadavg)\",\"produce\":\"$(cat "$SCEN_DIR/last.time")\",\"fetch_wait\":\"$FETCH_WAIT\"}"
  done
}

# fresh_live NAME "rate:count ..." [EXTRA_TOML]: each rate on a fresh broker and `fluxo run`
# (Tansu slows down as its topics fill, so runs on one broker would measure the broker's history)
fresh_live() {
  local name=$1 runs=$2 extra=${3:-} run
  for run in $runs; do
    RUN_PROCS=risk-scoring
    start_infra "$name-${run%:*}" "$RISK_FETCH_WAIT" "$extra"
    start_run "$name-${run%:*}"
    wait_assigned risk-scoring
    live "$name-${run%:*}" "$run"
    stop_all "$name-${run%:*}"
  done
}

# fresh_floor "rate:count ...": the passthrough alone, each rate on a fresh broker
fresh_floor() {
  local run
  for run in $1; do
    RUN_PROCS=risk-scoring
    start_infra "floor-${run%:*}" "$RISK_FETCH_WAIT"
    floor "floor-${run%:*}" "$run"
    stop_all "floor-${run%:*}"
  done
}

scenarios=("$@")
((${#scenarios[@]})) || scenarios=(risk risk-latency risk-down risk-floor market ledger)
json_line "{\"kind\":\"run\",\"date\":\"$(date -u +%FT%TZ)\",\"host\":\"$(nproc) CPU $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)\",\"command\":\"benches/loadtest.sh ${scenarios[*]}\",\"throughput_n\":$THROUGHPUT_N,\"uptime\":\"$(uptime)\"}"
for s in "${scenarios[@]}"; do
  case $s in
    risk)
      RUN_PROCS=risk-scoring
      start_infra risk "$RISK_FETCH_WAIT"
      throughput risk transactions transactions risk-scoring
      stop_all risk ;;
    risk-latency) fresh_live risk "$RISK_RUNS" ;;
    risk-down)
      fresh_live risk-down "$DOWN_RUNS" "[processors.risk-scoring.params.external]
url = \"$VALIDATOR_URL\"" ;;
    risk-floor) fresh_floor "$FLOOR_RUNS" ;;
    market)
      RUN_PROCS="price-change below-average"
      start_infra market "$THROUGHPUT_FETCH_WAIT"
      throughput market prices asset-prices price-change below-average
      stop_all market ;;
    ledger)
      RUN_PROCS=daily-consolidation
      start_infra ledger "$THROUGHPUT_FETCH_WAIT"
      throughput ledger ledger ledger-entries daily-consolidation
      stop_all ledger ;;
    *) echo "loadtest: unknown scenario $s (risk, risk-latency, risk-down, risk-floor, market, ledger)" >&2; exit 2 ;;
  esac
done
trap - EXIT
"$VENV/bin/python" "$ROOT/benches/loadtest_report.py" "$RESULTS" >"$LT_DIR/report.md"
echo "loadtest: report in $LT_DIR/report.md" >&2
