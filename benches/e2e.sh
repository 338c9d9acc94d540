#!/usr/bin/env bash
# End-to-end benchmarks of fluxo through a real broker (the Tansu dev broker `fluxo up` starts).
#
# Every scenario starts its own `fluxo up` (broker, embedded registry, state store, all
# processors, HTTP API) on non-default ports with a fresh data directory, drives it with
# `fluxo produce --simulate`, measures, stops it with SIGTERM and waits for it. Measurements go
# to $E2E_DIR/results.jsonl (one JSON object per phase or instance) plus the raw decisions of
# the risk runs; benches/e2e_report.py turns them into Markdown tables (run at the end).
#
# Scenarios (default: all, in this order):
#   risk        risk latency at the rates of RISK_RUNS, fetch_wait_max = LATENCY_FETCH_WAIT
#   risk-down   same, the external validator configured but nothing listening (VALIDATOR_URL)
#   market      PRICES_N simulated prices flat out; time until price-change and below-average
#               have checkpointed them all
#   ledger      LEDGER_N simulated ledger entries flat out; same for daily-consolidation
#
# Usage: benches/e2e.sh [risk] [risk-down] [market] [ledger]     (from the repository root,
#        after `cargo build --release`)
#
# Environment (defaults in brackets):
#   FLUXO_BIN [target/release/fluxo]   E2E_DIR [/tmp/fluxo-e2e-<pid>]   TOPOLOGY [topology.toml]
#   BROKER [127.0.0.1:39092]  REGISTRY [http://127.0.0.1:38081]  HTTP [127.0.0.1:38080]
#   RISK_WARMUP ["1000:3000"]             rate:count run first on each risk instance and reported
#                                         as `<scenario> warm-up` (the first records of a fresh
#                                         instance wait for the consumers' first fetches)
#   RISK_RUNS ["1000:20000 5000:50000"]   rate:count pairs, run in order on one instance
#   DOWN_RUNS ["1000:20000 5000:50000"]   the same for risk-down
#   PRICES_N [200000]  LEDGER_N [200000]
#   LATENCY_FETCH_WAIT [10ms]      fetch_wait_max of the risk instances
#   THROUGHPUT_FETCH_WAIT []       fetch_wait_max of market/ledger (empty: the topology's own)
#   VALIDATOR_URL [http://127.0.0.1:9]
#   CATCHUP_TIMEOUT [900] seconds to wait for processors to checkpoint everything
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
FLUXO_BIN=${FLUXO_BIN:-$ROOT/target/release/fluxo}
E2E_DIR=${E2E_DIR:-/tmp/fluxo-e2e-$$}
TOPOLOGY=${TOPOLOGY:-$ROOT/topology.toml}
BROKER=${BROKER:-127.0.0.1:39092}
REGISTRY=${REGISTRY:-http://127.0.0.1:38081}
HTTP=${HTTP:-127.0.0.1:38080}
RISK_WARMUP=${RISK_WARMUP:-"1000:3000"}
RISK_RUNS=${RISK_RUNS:-"1000:20000 5000:50000"}
DOWN_RUNS=${DOWN_RUNS:-"1000:20000 5000:50000"}
PRICES_N=${PRICES_N:-200000}
LEDGER_N=${LEDGER_N:-200000}
LATENCY_FETCH_WAIT=${LATENCY_FETCH_WAIT:-10ms}
THROUGHPUT_FETCH_WAIT=${THROUGHPUT_FETCH_WAIT:-}
VALIDATOR_URL=${VALIDATOR_URL:-http://127.0.0.1:9}
CATCHUP_TIMEOUT=${CATCHUP_TIMEOUT:-900}
CLK_TCK=$(getconf CLK_TCK)
RESULTS=$E2E_DIR/results.jsonl
SEED=41

[[ -x $FLUXO_BIN ]] || { echo "e2e: $FLUXO_BIN not found; run cargo build --release" >&2; exit 2; }
mkdir -p "$E2E_DIR"
echo "e2e: results in $E2E_DIR" >&2

FLUXO_PID=
TANSU_PID=
INSTANCE_DIR=

now_ms() { date +%s%3N; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# CPU seconds (user + system) of a live process.
cpu_s() {
  local pid=$1
  [[ -r /proc/$pid/stat ]] || { echo 0; return; }
  # fields after the `(comm)`: state is field 3, utime 14, stime 15.
  awk -v t="$CLK_TCK" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / t }' "/proc/$pid/stat"
}
# Peak resident set (VmHWM) in MiB.
hwm_mib() {
  local pid=$1
  awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null || echo 0
}
metrics() { curl -sf --max-time 5 "http://$HTTP/metrics"; }
# Sum of fluxo_checkpointed_offset{processor=$1, topic=$2} over partitions.
checkpointed() {
  metrics | awk -v p="processor=\"$1\"" -v t="topic=\"$2\"" '
    /^fluxo_checkpointed_offset\{/ && index($0, p) && index($0, t) { s += $NF }
    END { printf "%d", s }'
}

stop_instance() {
  [[ -n $FLUXO_PID ]] || return 0
  local name=$1
  local f_cpu f_hwm t_cpu=0 t_hwm=0
  f_cpu=$(cpu_s "$FLUXO_PID"); f_hwm=$(hwm_mib "$FLUXO_PID")
  if [[ -n $TANSU_PID ]]; then t_cpu=$(cpu_s "$TANSU_PID"); t_hwm=$(hwm_mib "$TANSU_PID"); fi
  kill -TERM "$FLUXO_PID" 2>/dev/null || true
  local rc=0
  wait "$FLUXO_PID" || rc=$?
  # fluxo stops the broker it started; make sure it did (only that pid).
  if [[ -n $TANSU_PID ]] && kill -0 "$TANSU_PID" 2>/dev/null; then
    sleep 5
    kill -0 "$TANSU_PID" 2>/dev/null && kill -TERM "$TANSU_PID" 2>/dev/null || true
  fi
  printf '{"kind":"instance","scenario":"%s","fluxo_cpu_s":%s,"fluxo_hwm_mib":%s,"tansu_cpu_s":%s,"tansu_hwm_mib":%s,"exit":%d,"startup_s":%s,"fetch_wait":"%s"}\n' \
    "$name" "$f_cpu" "$f_hwm" "$t_cpu" "$t_hwm" "$rc" "$STARTUP_S" "$FETCH_WAIT" >>"$RESULTS"
  echo "e2e: $name stopped (exit $rc); fluxo ${f_cpu}s CPU, peak ${f_hwm} MiB; tansu ${t_cpu}s CPU, peak ${t_hwm} MiB" >&2
  FLUXO_PID=; TANSU_PID=
}
trap 'stop_instance aborted' EXIT
trap 'exit 130' INT TERM

# start_instance NAME FETCH_WAIT [EXTRA_TOML]
start_instance() {
  local name=$1
  FETCH_WAIT=$2
  local extra=${3:-}
  INSTANCE_DIR=$E2E_DIR/$name
  rm -rf "$INSTANCE_DIR"; mkdir -p "$INSTANCE_DIR"
  cp "$TOPOLOGY" "$INSTANCE_DIR/topology.toml"
  if [[ -n $FETCH_WAIT ]]; then
    sed -i "s/^fetch_wait_max = .*/fetch_wait_max = \"$FETCH_WAIT\"/" "$INSTANCE_DIR/topology.toml"
    grep -q "^fetch_wait_max = \"$FETCH_WAIT\"" "$INSTANCE_DIR/topology.toml" ||
      { echo "e2e: could not set fetch_wait_max" >&2; exit 1; }
  else
    FETCH_WAIT=$(sed -n 's/^fetch_wait_max = "\(.*\)".*/\1/p' "$INSTANCE_DIR/topology.toml")
  fi
  [[ -n $extra ]] && printf '\n%s\n' "$extra" >>"$INSTANCE_DIR/topology.toml"
  export FLUXO_TOPOLOGY=$INSTANCE_DIR/topology.toml
  export FLUXO_BOOTSTRAP_SERVERS=$BROKER FLUXO_SCHEMA_REGISTRY_URL=$REGISTRY FLUXO_HTTP_ADDR=$HTTP
  export FLUXO_DATA_DIR=$INSTANCE_DIR/data
  for addr in "$BROKER" "${REGISTRY#http://}" "$HTTP"; do
    if (exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null; then
      echo "e2e: something already listens on $addr; pick other ports" >&2; exit 1
    fi
  done
  local t0; t0=$(now_ms)
  "$FLUXO_BIN" up >"$INSTANCE_DIR/up.log" 2>&1 &
  FLUXO_PID=$!
  local waited=0
  until grep -q '^ready' "$INSTANCE_DIR/up.log"; do
    if ! kill -0 "$FLUXO_PID" 2>/dev/null; then
      echo "e2e: fluxo up exited before ready:" >&2; tail -20 "$INSTANCE_DIR/up.log" >&2
      FLUXO_PID=; exit 1
    fi
    sleep 0.2; waited=$((waited + 1))
    if ((waited > 1500)); then echo "e2e: not ready after 300 s" >&2; exit 1; fi
  done
  STARTUP_S=$(awk -v a="$t0" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }')
  TANSU_PID=$(ps -o pid=,comm= --ppid "$FLUXO_PID" | awk '$2 == "tansu" { print $1 }' | head -1)
  echo "e2e: $name ready in ${STARTUP_S}s (fluxo pid $FLUXO_PID, tansu pid ${TANSU_PID:-none}, fetch_wait_max $FETCH_WAIT)" >&2
}

# timed_produce OUT_PREFIX ARGS... : runs `fluxo produce`, wall/user/sys into OUT_PREFIX.time;
# prints how many records the broker acknowledged (a failed produce is measured, not fatal).
timed_produce() {
  local out=$1; shift
  local TIMEFORMAT='%R %U %S' rc=0
  { time "$FLUXO_BIN" produce "$@" 2>"$out.err"; } 2>"$out.time" || rc=$?
  ((rc == 0)) || echo "e2e: fluxo produce exited $rc: $(grep '^fluxo: error' "$out.err")" >&2
  sed -n 's/^produced \([0-9]*\) of .*/\1/p' "$out.err" | tail -1 | grep . || echo 0
}

# wait_checkpointed PROCESSOR TOPIC TARGET : prints ms since $PHASE_T0 when reached
wait_checkpointed() {
  local deadline=$(( $(date +%s) + CATCHUP_TIMEOUT ))
  local got
  while got=$(checkpointed "$1" "$2"); (( got < $3 )); do
    if (( $(date +%s) > deadline )); then
      echo "e2e: $1 checkpointed only $got of $3 records of $2 in ${CATCHUP_TIMEOUT}s" >&2
      echo -1; return 0
    fi
    sleep 0.1
  done
  echo $(( $(now_ms) - PHASE_T0 ))
}

# risk_runs SCENARIO "rate:count ..." (RISK_TOTAL: decisions so far on this instance)
risk_runs() {
  local scenario=$1 runs=$2 run rate n
  for run in $runs; do
    rate=${run%:*}; n=${run#*:}
    local base; base=$(checkpointed risk-scoring transactions)
    local prefix=$INSTANCE_DIR/${scenario// /-}-$rate
    local load0 f0 t0; load0=$(loadavg); f0=$(cpu_s "$FLUXO_PID"); t0=$(cpu_s "${TANSU_PID:-0}")
    PHASE_T0=$(now_ms)
    echo "e2e: $scenario: $n transactions at $rate/s" >&2
    SEED=$((SEED + 1))   # a new seed per run: new transaction ids, reproducible data
    local acked; acked=$(timed_produce "$prefix.produce" --simulate transactions --rate "$rate" --count "$n" --seed "$SEED")
    local done_ms; done_ms=$(wait_checkpointed risk-scoring transactions $((base + acked)))
    local f1 t1 load1; f1=$(cpu_s "$FLUXO_PID"); t1=$(cpu_s "${TANSU_PID:-0}"); load1=$(loadavg)
    metrics >"$prefix.metrics" || true
    RISK_TOTAL=$(checkpointed risk-scoring transactions)
    # Every decision so far, then keep this run's (event_time >= PHASE_T0) in the report.
    "$FLUXO_BIN" consume --topic risk-decisions --from-beginning --count "$RISK_TOTAL" --timeout 300 \
      >"$prefix.decisions.jsonl" 2>"$prefix.consume.err"
    printf '{"kind":"risk","scenario":"%s","rate":%s,"count":%s,"acked":%s,"t0_ms":%s,"done_ms":%s,"produce_time":"%s","produce_log":"%s","fluxo_cpu_s":%s,"tansu_cpu_s":%s,"load_before":"%s","load_after":"%s","decisions":"%s","metrics":"%s","fetch_wait":"%s"}\n' \
      "$scenario" "$rate" "$n" "$acked" "$PHASE_T0" "$done_ms" "$(cat "$prefix.produce.time")" \
      "$(grep '^produced' "$prefix.produce.err" | tr -d '"')" \
      "$(awk -v a="$f0" -v b="$f1" 'BEGIN{printf "%.2f", b-a}')" \
      "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')" \
      "$load0" "$load1" "$prefix.decisions.jsonl" "$prefix.metrics" "$FETCH_WAIT" >>"$RESULTS"
  done
}

# throughput SCENARIO SIM COUNT TOPIC PROCESSOR...
throughput() {
  local scenario=$1 sim=$2 n=$3 topic=$4; shift 4
  local procs=("$@") p
  local -A base
  for p in "${procs[@]}"; do base[$p]=$(checkpointed "$p" "$topic"); done
  local prefix=$INSTANCE_DIR/$scenario
  local load0 f0 t0; load0=$(loadavg); f0=$(cpu_s "$FLUXO_PID"); t0=$(cpu_s "${TANSU_PID:-0}")
  PHASE_T0=$(now_ms)
  echo "e2e: $scenario: $n $sim records flat out" >&2
  local acked; acked=$(timed_produce "$prefix.produce" --simulate "$sim" --count "$n" --seed 42)
  local produced_ms=$(( $(now_ms) - PHASE_T0 ))
  local done_json="" ms
  for p in "${procs[@]}"; do
    ms=$(wait_checkpointed "$p" "$topic" $((base[$p] + acked)))
    done_json+="${done_json:+,}\"$p\":$ms"
    ((ms < 0)) || echo "e2e: $scenario: $p checkpointed all $acked acknowledged records after ${ms} ms" >&2
  done
  local f1 t1 load1; f1=$(cpu_s "$FLUXO_PID"); t1=$(cpu_s "${TANSU_PID:-0}"); load1=$(loadavg)
  metrics >"$prefix.metrics" || true
  printf '{"kind":"throughput","scenario":"%s","sim":"%s","count":%s,"acked":%s,"produced_ms":%s,"done_ms":{%s},"produce_time":"%s","produce_log":"%s","fluxo_cpu_s":%s,"tansu_cpu_s":%s,"load_before":"%s","load_after":"%s","fetch_wait":"%s","metrics":"%s"}\n' \
    "$scenario" "$sim" "$n" "$acked" "$produced_ms" "$done_json" "$(cat "$prefix.produce.time")" \
    "$(grep '^produced' "$prefix.produce.err" | tr -d '"')" \
    "$(awk -v a="$f0" -v b="$f1" 'BEGIN{printf "%.2f", b-a}')" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')" \
    "$load0" "$load1" "$FETCH_WAIT" "$prefix.metrics" >>"$RESULTS"
}

scenarios=("$@")
((${#scenarios[@]})) || scenarios=(risk risk-down market ledger)
for s in "${scenarios[@]}"; do
  case $s in
    risk)
      start_instance risk "$LATENCY_FETCH_WAIT"
      RISK_TOTAL=0
      risk_runs "risk warm-up" "$RISK_WARMUP"
      risk_runs risk "$RISK_RUNS"
      stop_instance risk ;;
    risk-down)
      start_instance risk-down "$LATENCY_FETCH_WAIT" \
        "[processors.risk-scoring.params.external]
url = \"$VALIDATOR_URL\""
      RISK_TOTAL=0
      risk_runs "risk-down warm-up" "$RISK_WARMUP"
      risk_runs risk-down "$DOWN_RUNS"
      stop_instance risk-down ;;
    market)
      start_instance market "$THROUGHPUT_FETCH_WAIT"
      throughput market prices "$PRICES_N" asset-prices price-change below-average
      stop_instance market ;;
    ledger)
      start_instance ledger "$THROUGHPUT_FETCH_WAIT"
      throughput ledger ledger "$LEDGER_N" ledger-entries daily-consolidation
      stop_instance ledger ;;
    *) echo "e2e: unknown scenario $s (risk, risk-down, market, ledger)" >&2; exit 2 ;;
  esac
done
trap - EXIT
python3 "$ROOT/benches/e2e_report.py" "$RESULTS"
