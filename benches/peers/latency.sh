#!/usr/bin/env bash
# Latency of issue 15: fluxo, Kafka Streams and Flink each fed live, paced input on the same
# broker, one engine at a time, every output joined to the input record that caused it.
#
# Usage: benches/peers/latency.sh            (repository root or anywhere)
# For each guarantee, one broker (`fluxo up` with the topology cut before the processors, as
# throughput.sh runs it); then for each scenario, rate and engine, in turn (fluxo, Kafka
# Streams, Flink, the next rate ...), on fresh input and output topics, a fresh consumer group,
# transactional id and state:
#   1. the engine starts (fluxo: `fluxo run` with only the scenario's processor; the peers:
#      benches/peers/run.sh, unbounded, with throughput.sh's settings);
#   2. warm-up: `fluxo produce --simulate prices|ledger --rate R` for WARMUP_S seconds (the
#      JVMs compile their hot paths, Flink's job finishes starting), then SETTLE_S seconds;
#   3. the tap of benches/loadtest.rs (read_committed) starts on the input and the engine's
#      output topic, then `fluxo produce --simulate ... --rate R` for D seconds (the same seed
#      for every engine: the same records, the same alerts); the tap stops GRACE seconds after
#      the producer and writes its JSON. It joins each output to its input through the
#      `fluxo-id` header (fluxo's own; the peers put `<engine>:<topic>/<partition>/<offset>/<i>`
#      on every output an input caused): latency = output's Kafka timestamp - input's,
#      visible = when the tap received the output - input's timestamp (under exactly-once: when
#      the transaction committed). Every output topic is created with
#      message.timestamp.type=LogAppendTime, so "latency" is when the broker appended the output
#      for every engine alike (Kafka Streams would otherwise stamp its outputs with the input's
#      timestamp, its default). The input timestamp is the producer's, the moment it stamped the
#      event time.
# Each engine's steps 1-3 hold the shared benchmark lock (LOCK), so no other measurement
# overlaps them; the load average is recorded at their start and end.
# Price change emits few alerts (a rise of >= 10% over the trailing 5-minute low, a 5-minute
# cooldown per symbol, 13 simulated symbols, each alert decided once the symbol's event time is
# 30 s past the quote): expect tens per run, not thousands; the report states every sample size.
#
# Environment: SCENARIOS ["consolidation price-change"]  RATES ["1000 5000"]
#   GUARANTEES ["exactly_once"] exactly_once (fluxo exactly_once, KS exactly_once_v2, Flink
#   transactional sink, 1 s checkpoints) and/or at_least_once (fluxo effectively_once, KS and
#   Flink at-least-once)
#   ENGINES ["fluxo kafka-streams flink"]  D [30] seconds produced per run (PC_D [90] for price
#   change: its alerts come 30 s after their quote)  WARMUP_S [10]  SETTLE_S [5]  GRACE [8]
#   FLUXO_BIN [target/release/fluxo]  LOADTEST_BIN [built with cargo bench --no-run]
#   LOCK [/tmp/fluxo-bench.lock]  BROKER [127.0.0.1:29092] (registry 28081, infra HTTP 28079,
#   fluxo run's HTTP 28080: ports no other benchmark script uses)
#   OUT [benches/reports/peers-latency-<UTC time>] (results.jsonl, report.md, taps, logs)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PEERS=$ROOT/benches/peers
# shellcheck source=benches/peers/lib.sh
. "$PEERS/lib.sh"
SCENARIOS=${SCENARIOS:-"consolidation price-change"}
RATES=${RATES:-"1000 5000"}
GUARANTEES=${GUARANTEES:-exactly_once}
ENGINES=${ENGINES:-"fluxo kafka-streams flink"}
D=${D:-30} PC_D=${PC_D:-90} WARMUP_S=${WARMUP_S:-10} SETTLE_S=${SETTLE_S:-5} GRACE=${GRACE:-8}
LOCK=${LOCK:-/tmp/fluxo-bench.lock}
BROKER=${BROKER:-127.0.0.1:29092}
REGISTRY=http://127.0.0.1:28081 INFRA_HTTP=127.0.0.1:28079 HTTP=127.0.0.1:28080
OUT=${OUT:-$ROOT/benches/reports/peers-latency-$(date -u +%Y%m%dT%H%M%SZ)}
KAFKA_LIB=${KAFKA_LIB:-$HOME/.cache/fluxo/kafka-4.1.1/lib}
FLUXO_BIN=${FLUXO_BIN:-$ROOT/target/release/fluxo}
if [[ ! -x $FLUXO_BIN ]]; then nice -n 10 cargo build --release --locked --bin fluxo >&2; fi
if [[ -z ${LOADTEST_BIN:-} ]]; then
  LOADTEST_BIN=$(loadtest_bin)
fi
[[ -x $LOADTEST_BIN ]] || { echo "latency: no loadtest binary" >&2; exit 2; }
[[ -r $PEERS/kstreams/target/classpath.txt && -r $PEERS/flink/target/classpath.txt ]] || "$PEERS/build.sh"
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
echo "latency: results in $OUT" >&2

now_ms() { date +%s%3N; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
listening() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
# wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds
wait_for() {
  local limit=$1 what=$2 i; shift 2
  for ((i = 0; i < limit * 5; i++)); do "$@" && return 0; sleep 0.2; done
  echo "latency: timed out waiting for $what" >&2; return 1
}
# stop PID: SIGTERM, then SIGKILL after 30 s
stop() {
  local i
  kill -TERM "$1" 2>/dev/null || return 0
  for ((i = 0; i < 300; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

for addr in "$BROKER" "${REGISTRY#http://}" "$INFRA_HTTP" "$HTTP"; do
  if listening "$addr"; then echo "latency: something already listens on $addr; pick other ports" >&2; exit 1; fi
done
export FLUXO_BOOTSTRAP_SERVERS=$BROKER FLUXO_SCHEMA_REGISTRY_URL=$REGISTRY
HOST="$(nproc) CPU $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"

for G in $GUARANTEES; do
  case $G in
    exactly_once) fluxo_g=exactly_once ks_g=exactly_once_v2 flink_g=exactly_once gs=eo ;;
    at_least_once) fluxo_g=effectively_once ks_g=at_least_once flink_g=at_least_once gs=alo ;;
    *) echo "latency: GUARANTEES: exactly_once and/or at_least_once" >&2; exit 2 ;;
  esac
  GD=$OUT/$G; mkdir -p "$GD"
  awk -v g="$fluxo_g" '
    /^\[processors\./ { exit }
    /^processing_guarantee/ { print "processing_guarantee = \"" g "\""; next }
    { print }' "$ROOT/topology.toml" >"$GD/infra.toml"
  FLUXO_HTTP_ADDR=$INFRA_HTTP FLUXO_DATA_DIR=$GD/infra "$FLUXO_BIN" --topology "$GD/infra.toml" up >"$GD/infra.log" 2>&1 &
  INFRA_PID=$!; PIDS+=("$INFRA_PID")
  wait_for 300 "fluxo up" grep -qs '^ready' "$GD/infra.log"
  # Each run's topics are new registry subjects: fluxo produce and fluxo run register them with a
  # token minted from the development secret `fluxo up` printed.
  export FLUXO_JWT_SECRET; FLUXO_JWT_SECRET=$(awk '$1 == "jwt-secret" { print $2; exit }' "$GD/infra.log")
  printf '{"kind":"run","date":"%s","host":"%s","guarantee":"%s","fluxo":"%s","uptime":"%s"}\n' \
    "$(date -u +%FT%TZ)" "$HOST" "$G" "$(git -C "$ROOT" describe --always --dirty)" "$(uptime)" >>"$RESULTS"

  for s in $SCENARIOS; do
    case $s in
      price-change) input=asset-prices output=price-alerts sim=prices proc=price-change rule=price-change secs=$PC_D ;;
      consolidation) input=ledger-entries output=daily-balances sim=ledger proc=daily-consolidation rule=consolidation secs=$D ;;
      *) echo "latency: scenario $s: price-change or consolidation" >&2; exit 2 ;;
    esac
    for R in $RATES; do
      for E in $ENGINES; do
        case $E in fluxo) es=fluxo ;; kafka-streams) es=ks ;; flink) es=flink ;;
          *) echo "latency: engine $E: fluxo, kafka-streams or flink" >&2; exit 2 ;; esac
        tag=$gs-$R-$es
        # fluxo writes the renamed topic of its topology; a peer, a plain topic of its own (JSON)
        in_t=$input-$tag out_t=$output-$tag
        [[ $E == fluxo ]] || out_t=$output.$tag
        RD=$GD/$s-$R-$es; mkdir -p "$RD"
        # The run's topology: this guarantee, the scenario's processor alone, its input and
        # output renamed to this run's topics, its own group prefix (fresh group and
        # transactional id).
        awk -v keep="$proc" -v g="$fluxo_g" -v tag="$tag" -v in_t="$input" -v out_t="$output" '
          /^\[/ { k = 1; if ($0 ~ /^\[processors\./) { n = $0; sub(/^\[processors\./, "", n); sub(/[].].*/, "", n); k = (n == keep) } }
          /^processing_guarantee/ { print "processing_guarantee = \"" g "\""; next }
          /^group_prefix/ { print "group_prefix = \"fluxo-lat-" tag "\""; next }
          { gsub("\\[topics\\." in_t "\\]", "[topics." in_t "-" tag "]"); gsub("\\[topics\\." out_t "\\]", "[topics." out_t "-" tag "]")
            gsub("\"" in_t "\"", "\"" in_t "-" tag "\""); gsub("\"" out_t "\"", "\"" out_t "-" tag "\"") }
          k' "$ROOT/topology.toml" >"$RD/topology.toml"
        "$FLUXO_BIN" --topology "$RD/topology.toml" topics create >"$RD/topics.log" 2>&1
        if [[ $E == fluxo ]]; then
          kafka_tool kafka.admin.ConfigCommand --bootstrap-server "$BROKER" --alter --entity-type topics \
            --entity-name "$out_t" --add-config message.timestamp.type=LogAppendTime >>"$RD/topics.log" 2>&1 || { tail -3 "$RD/topics.log" >&2; exit 1; }
        else
          kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BROKER" --create --topic "$out_t" \
            --partitions 3 --config message.timestamp.type=LogAppendTime >>"$RD/topics.log" 2>&1 || { tail -3 "$RD/topics.log" >&2; exit 1; }
        fi

        exec 9>"$LOCK"
        echo "latency: $G $s $R/s $E: waiting for the benchmark lock" >&2
        flock 9
        load0=$(loadavg)
        echo "latency: $G $s $R/s $E: start (load $load0)" >&2
        case $E in
          fluxo)
            FLUXO_HTTP_ADDR=$HTTP FLUXO_DATA_DIR=$RD/fluxo "$FLUXO_BIN" --topology "$RD/topology.toml" run >"$RD/engine.log" 2>&1 &
            epid=$!
            wait_for 120 "fluxo run" curl -sf --max-time 1 "http://$HTTP/readyz" -o /dev/null ;;
          kafka-streams)
            "$PEERS/run.sh" kstreams --rule "$rule" --bootstrap "$BROKER" --input "$in_t" --output "$out_t" \
              --app-id "ks-lat-$tag" --state-dir "$RD/ks-state" --guarantee "$ks_g" >"$RD/engine.log" 2>&1 &
            epid=$!
            wait_for 120 "Kafka Streams" grep -qs -- "-> RUNNING" "$RD/engine.log" ;;
          flink)
            "$PEERS/run.sh" flink --rule "$rule" --bootstrap "$BROKER" --input "$in_t" --output "$out_t" \
              --group "flink-lat-$tag" --checkpoint-dir "$RD/flink-checkpoints" --guarantee "$flink_g" >"$RD/engine.log" 2>&1 &
            epid=$! ;;
        esac
        PIDS+=("$epid")
        # warm-up, then until the engine has processed a record (Flink's job starts meanwhile)
        "$FLUXO_BIN" --topology "$RD/topology.toml" produce --simulate "$sim" --topic "$in_t" --rate "$R" \
          --count $((R * WARMUP_S)) --seed 7 >/dev/null 2>"$RD/warmup.log"
        if [[ $E != fluxo ]]; then wait_for 120 "$E's first record" grep -qs '^peers: first' "$RD/engine.log"; fi
        sleep "$SETTLE_S"
        since=$(now_ms)
        "$LOADTEST_BIN" tap --bootstrap "$BROKER" --input "$in_t" --output "$out_t" --since-ms "$since" \
          --expect 1000000000 --out "$RD/tap.json" --timeout-s $((secs + GRACE + 5)) 2>"$RD/tap.log" &
        tpid=$!; PIDS+=("$tpid")
        wait_for 60 "the tap" grep -qs '^loadtest: positioned' "$RD/tap.log"
        t0=$(now_ms)
        "$FLUXO_BIN" --topology "$RD/topology.toml" produce --simulate "$sim" --topic "$in_t" --rate "$R" \
          --count $((R * secs)) --seed 21 >/dev/null 2>"$RD/produce.log"
        t1=$(now_ms)
        produced=$(sed -n 's/^produced \([0-9]*\) of .*/\1/p' "$RD/produce.log" | tail -1)
        wait "$tpid" || echo "latency: tap failed: $(tail -2 "$RD/tap.log")" >&2
        alive=true; kill -0 "$epid" 2>/dev/null || alive=false
        load1=$(loadavg)
        stop "$epid"
        flock -u 9
        PIDS=("$INFRA_PID")
        python3 - "$RD/tap.json" "$s" "$G" "$E" "$R" "$secs" "${produced:-0}" "$t0" "$t1" "$load0 / $load1" "$alive" >>"$RESULTS" <<'PY'
import json, sys
path, s, g, e, r, secs, produced, t0, t1, load, alive = sys.argv[1:]
try:
    t = json.load(open(path))
except (OSError, ValueError) as err:
    print(json.dumps({"kind": "engine", "scenario": s, "guarantee": g, "engine": e, "rate": int(r), "error": str(err)}))
    sys.exit()
one = lambda k: next(iter(t.get(k, {}).values()), None)
print(json.dumps({"kind": "engine", "scenario": s, "guarantee": g, "engine": e, "rate": int(r),
    "seconds": int(secs), "produced": int(produced), "produce_s": (int(t1) - int(t0)) / 1000,
    "joined": t["joined"], "outputs_without_input": t["outputs_without_input"],
    "latency_ms": one("latency_ms"), "visible_ms": one("visible_ms"),
    "steady_latency_ms": one("steady_latency_ms"), "steady_visible_ms": one("steady_visible_ms"),
    "load": load, "engine_alive_at_end": alive == "true", "tap": path}))
PY
        tail -1 "$RESULTS" | python3 -c 'import json, sys
r = json.load(sys.stdin); v = r.get("visible_ms") or {}
print("latency: %s: joined %s, visible p50 %s p99 %s max %s ms (load %s)" % (r["engine"], r.get("joined"), v.get("p50"), v.get("p99"), v.get("max"), r.get("load")))' >&2
      done
    done
  done
  stop "$INFRA_PID"
  PIDS=()
done

python3 "$PEERS/latency_report.py" "$RESULTS" >"$OUT/report.md"
cat "$OUT/report.md"
