#!/usr/bin/env bash
# The differential check of issue 15: the same input through fluxo, Kafka Streams and Flink,
# final outputs compared (same alerts, same balances); every mismatch is printed, exit 1 on any.
#
# Usage (any directory): benches/peers/diff.sh
# Per guarantee in GUARANTEES (default "exactly_once at_least_once"), on a fresh broker:
#   1. `fluxo up` (Kafka 4.1.1 KRaft + embedded registry + topics, ports 49092/48081/48079);
#   2. input: `fluxo produce --simulate prices|ledger --count DIFF_N --seed 11|12` and the
#      hand-made edge cases of diff/edge_cases.py (duplicates, late and out-of-order quotes, a
#      rise of exactly 10%, the cooldown and window edges, midnight in Sao Paulo, its former
#      summer time, the dedup horizon, invalid and overflowing amounts) via `fluxo produce --file`;
#   3. fluxo run (price-change + daily-consolidation; exactly_once, or effectively_once for
#      the at-least-once run), two Kafka Streams apps (exactly_once_v2 / at_least_once) and two
#      Flink jobs (transactional KafkaSink + checkpoints / at-least-once), all at once;
#   4. the outputs, read with read_committed, compared by diff/compare.py.
# Quiet symbols: the last 30 s of event time of every symbol stay held until released. fluxo
# and Kafka Streams release them on the wall clock once a symbol has been quiet for IDLE_MS
# (fluxo's idle_timeout, set to the same value; Kafka Streams: a WALL_CLOCK_TIME punctuation);
# the Flink job reads a bounded source (the offsets at its start) and releases them on the final
# watermark at the end of input (fluxo's own end-of-input release, as in `fluxo replay`). The
# check waits for quiescence: fluxo checkpointed every input, the Kafka Streams apps processed
# every input, the Flink jobs finished, then IDLE_MS + 5 s for the idle releases and commits.
#
# Environment: FLUXO_BIN [target/release/fluxo, else target/debug/fluxo]  DIFF_N [10000]
#   IDLE_MS [5000]  OUT [benches/results/peers-diff-<UTC date>]  GUARANTEES
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PEERS=$ROOT/benches/peers
# shellcheck source=benches/peers/lib.sh
. "$PEERS/lib.sh"
DIFF_N=${DIFF_N:-10000}
IDLE_MS=${IDLE_MS:-5000}
OUT=${OUT:-$ROOT/benches/results/peers-diff-$(date -u +%F)}
GUARANTEES=${GUARANTEES:-"exactly_once at_least_once"}
BROKER=127.0.0.1:49092 REGISTRY=http://127.0.0.1:48081 INFRA_HTTP=127.0.0.1:48079 HTTP=127.0.0.1:48080
FLUXO_BIN=${FLUXO_BIN:-}
if [[ -z $FLUXO_BIN ]]; then
  FLUXO_BIN=$ROOT/target/release/fluxo
  [[ -x $FLUXO_BIN ]] || FLUXO_BIN=$ROOT/target/debug/fluxo
fi
[[ -x $FLUXO_BIN ]] || { echo "diff: no fluxo binary (cargo build --release --bin fluxo)" >&2; exit 2; }
[[ -r $PEERS/kstreams/target/classpath.txt && -r $PEERS/flink/target/classpath.txt ]] || "$PEERS/build.sh"
KAFKA_LIB=${KAFKA_LIB:-$HOME/.cache/fluxo/kafka-4.1.1/lib}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/peers-diff.XXXXXX)
echo "diff: work in $WORK, summary in $OUT, fluxo $FLUXO_BIN" >&2


metric_sum() {   # NAME PROCESSOR TOPIC
  curl -sf --max-time 5 "http://$HTTP/metrics" | awk -v n="$1{" -v p="processor=\"$2\"" -v t="topic=\"$3\"" '
    index($0, n) == 1 && index($0, p) && index($0, t) { s += $NF } END { printf "%d", s }'
}
wait_for() {   # SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds
  local limit=$1 what=$2 i; shift 2
  for ((i = 0; i < limit * 5; i++)); do "$@" && return 0; sleep 0.2; done
  echo "diff: timed out waiting for $what" >&2; return 1
}
produced() { sed -n 's/^produced \([0-9]*\) of .*/\1/p' "$1" | tail -1; }

status=0
for g in $GUARANTEES; do
  case $g in
    exactly_once) fluxo_g=exactly_once ks_g=exactly_once_v2 flink_g=exactly_once ;;
    at_least_once) fluxo_g=effectively_once ks_g=at_least_once flink_g=at_least_once ;;
    *) echo "diff: guarantee $g: exactly_once or at_least_once" >&2; exit 2 ;;
  esac
  D=$WORK/$g; mkdir -p "$D"
  # topology: the repository's, this guarantee, only the two processors under test, and
  # price change's idle_timeout = IDLE_MS
  awk -v g="$fluxo_g" '
    /^\[/ { keep = !($0 ~ /^\[processors\./) || $0 ~ /^\[processors\.(price-change|daily-consolidation)\]/ }
    /^processing_guarantee/ { print "processing_guarantee = \"" g "\""; next }
    keep' "$ROOT/topology.toml" >"$D/topology.toml"
  printf '\n[processors.price-change.params]\nidle_timeout = "%sms"\n' "$IDLE_MS" >>"$D/topology.toml"
  awk '/^\[processors\./ { exit } { print }' "$D/topology.toml" >"$D/infra.toml"
  export FLUXO_BOOTSTRAP_SERVERS=$BROKER FLUXO_SCHEMA_REGISTRY_URL=$REGISTRY
  FLUXO_HTTP_ADDR=$INFRA_HTTP FLUXO_DATA_DIR=$D/infra "$FLUXO_BIN" --topology "$D/infra.toml" up >"$D/infra.log" 2>&1 &
  PIDS+=($!)
  wait_for 300 "fluxo up" bash -c "grep -q '^ready' '$D/infra.log' || curl -sf --max-time 1 http://$INFRA_HTTP/readyz >/dev/null"
  for t in ks-price-alerts ks-daily-balances flink-price-alerts flink-daily-balances; do
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BROKER" --create --topic "$t" --partitions 3 >/dev/null
  done
  # input
  "$FLUXO_BIN" --topology "$D/topology.toml" produce --simulate prices --count "$DIFF_N" --seed 11 2>"$D/produce-prices.log"
  python3 "$PEERS/diff/edge_cases.py" prices >"$D/edge-prices.jsonl"
  "$FLUXO_BIN" --topology "$D/topology.toml" produce --topic asset-prices --file "$D/edge-prices.jsonl" 2>"$D/produce-edge-prices.log"
  "$FLUXO_BIN" --topology "$D/topology.toml" produce --simulate ledger --count "$DIFF_N" --seed 12 2>"$D/produce-ledger.log"
  python3 "$PEERS/diff/edge_cases.py" ledger >"$D/edge-ledger.jsonl"
  "$FLUXO_BIN" --topology "$D/topology.toml" produce --topic ledger-entries --file "$D/edge-ledger.jsonl" 2>"$D/produce-edge-ledger.log" || true
  n_prices=$(( $(produced "$D/produce-prices.log") + $(produced "$D/produce-edge-prices.log") ))
  n_ledger=$(( $(produced "$D/produce-ledger.log") + $(produced "$D/produce-edge-ledger.log") ))
  echo "diff: $g: input $n_prices quotes, $n_ledger ledger entries (edge cases: $(wc -l <"$D/edge-prices.jsonl") + $(wc -l <"$D/edge-ledger.jsonl") lines, invalid ones rejected by the producer or dead-lettered)" >&2

  # the three engines, all at once
  FLUXO_HTTP_ADDR=$HTTP FLUXO_DATA_DIR=$D/run "$FLUXO_BIN" --topology "$D/topology.toml" run >"$D/fluxo-run.log" 2>&1 &
  fluxo_pid=$!; PIDS+=("$fluxo_pid")
  "$PEERS/run.sh" kstreams --rule price-change --bootstrap "$BROKER" --input asset-prices --output ks-price-alerts \
    --app-id "ks-pc-$g" --state-dir "$D/ks-state" --guarantee "$ks_g" --idle-ms "$IDLE_MS" --expect "$n_prices" >"$D/ks-pc.log" 2>&1 &
  PIDS+=($!)
  "$PEERS/run.sh" kstreams --rule consolidation --bootstrap "$BROKER" --input ledger-entries --output ks-daily-balances \
    --app-id "ks-dc-$g" --state-dir "$D/ks-state" --guarantee "$ks_g" --expect "$n_ledger" >"$D/ks-dc.log" 2>&1 &
  PIDS+=($!)
  "$PEERS/run.sh" flink --rule price-change --bootstrap "$BROKER" --input asset-prices --output flink-price-alerts \
    --group "flink-pc-$g" --guarantee "$flink_g" --bounded true >"$D/flink-pc.log" 2>&1 &
  flink_pc=$!
  "$PEERS/run.sh" flink --rule consolidation --bootstrap "$BROKER" --input ledger-entries --output flink-daily-balances \
    --group "flink-dc-$g" --guarantee "$flink_g" --bounded true >"$D/flink-dc.log" 2>&1 &
  flink_dc=$!
  PIDS+=("$flink_pc" "$flink_dc")

  wait_for 600 "fluxo price-change" bash -c "(( \$(curl -sf http://$HTTP/metrics | awk '/^fluxo_checkpointed_offset\\{/ && /processor=\"price-change\"/ && /topic=\"asset-prices\"/ {s+=\$NF} END {print s+0}') >= $n_prices ))"
  wait_for 600 "fluxo daily-consolidation" bash -c "(( \$(curl -sf http://$HTTP/metrics | awk '/^fluxo_checkpointed_offset\\{/ && /processor=\"daily-consolidation\"/ && /topic=\"ledger-entries\"/ {s+=\$NF} END {print s+0}') >= $n_ledger ))"
  wait_for 600 "Kafka Streams" bash -c "grep -q '^peers: done' '$D/ks-pc.log' && grep -q '^peers: done' '$D/ks-dc.log'"
  wait "$flink_pc" || { echo "diff: $g: Flink price-change failed:" >&2; tail -30 "$D/flink-pc.log" >&2; status=1; }
  wait "$flink_dc" || { echo "diff: $g: Flink consolidation failed:" >&2; tail -30 "$D/flink-dc.log" >&2; status=1; }
  sleep $(( IDLE_MS / 1000 + 5 ))

  # outputs, read_committed
  "$FLUXO_BIN" --topology "$D/topology.toml" consume --topic price-alerts --from-beginning --timeout 10 >"$D/fluxo-alerts.jsonl" 2>"$D/consume.log"
  "$FLUXO_BIN" --topology "$D/topology.toml" consume --topic daily-balances --from-beginning --timeout 10 >"$D/fluxo-balances.jsonl" 2>>"$D/consume.log"
  for peer in ks flink; do
    for kind in alerts:price-alerts balances:daily-balances; do
      kafka_tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$BROKER" \
        --topic "$peer-${kind#*:}" --from-beginning --isolation-level read_committed --timeout-ms 10000 \
        >"$D/$peer-${kind%%:*}.jsonl" 2>>"$D/consume.log" || true
    done
  done
  cleanup
  mkdir -p "$OUT/$g"
  cp "$D/topology.toml" "$OUT/$g/"
  python3 "$PEERS/diff/compare.py" "$D" "$g" | tee "$OUT/$g/result.txt" || status=1
  cp "$D/summary.json" "$OUT/$g/"
done
exit $status
