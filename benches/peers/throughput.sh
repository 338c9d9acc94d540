#!/usr/bin/env bash
# Throughput of issue 15: N records (default 1,000,000) preloaded per scenario, then fluxo, the
# raw rdkafka passthrough (benches/loadtest.rs), Kafka Streams and Flink each consume the same
# topic on the same broker, one at a time, from the beginning. benches/peers/measure.py takes
# records/s, CPU-seconds of the processing process and of the broker (from /proc, between the
# first record and the last: see measure.py for how each engine's "last" is known) and peak RSS.
#
# Usage: benches/peers/throughput.sh            (repository root or anywhere)
# Environment: N [1000000]  SCENARIOS ["price-change consolidation"]
#   GUARANTEE [exactly_once] exactly_once (fluxo exactly_once, KS exactly_once_v2, Flink
#   transactional sink, 1 s checkpoints) or at_least_once (fluxo effectively_once, KS and Flink
#   at-least-once); the passthrough is never transactional.
#   ENGINES ["passthrough fluxo kafka-streams flink"] the engines to measure, in this order
#   CHECKPOINT_INTERVAL [the topology's, 200ms] fluxo's checkpoint_interval (the peers commit
#   every 100 ms (Kafka Streams exactly_once_v2) and every 1 s (Flink's checkpoints here))
#   FLUXO_BIN [target/release/fluxo]  LOADTEST_BIN [built with cargo bench --no-run]
#   KEYS [the simulator's: 13 symbols, 1,000 accounts] distinct keys of the preload
#   (`fluxo produce --keys`)   CACHE_MB [fluxo run's 512] fluxo's `[state] cache_mb`
#   INSTANCES [1] fluxo only: this many `fluxo run` in the processor's group, started at once,
#   each with its own runtime.instance, state dir and HTTP port (58090 + i); measured together
#   (measure.py --instances). Used by benches/scaling.sh.
#   OUT [benches/reports/peers-throughput-<UTC time>] (results.jsonl, report.md, throughput.svg
#   (benches/peers/plot.py), logs)
# The machine is shared (2 vCPU): records/s moves with the load average, which every line
# records; CPU-seconds per million records are the figure to compare.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PEERS=$ROOT/benches/peers
# shellcheck source=benches/peers/lib.sh
. "$PEERS/lib.sh"
N=${N:-1000000}
SCENARIOS=${SCENARIOS:-"price-change consolidation"}
ENGINES=${ENGINES:-"passthrough fluxo kafka-streams flink"}
GUARANTEE=${GUARANTEE:-exactly_once}
CHECKPOINT_INTERVAL=${CHECKPOINT_INTERVAL:-}
OUT=${OUT:-$ROOT/benches/reports/peers-throughput-$(date -u +%Y%m%dT%H%M%SZ)}
BROKER=127.0.0.1:59092 REGISTRY=http://127.0.0.1:58081 INFRA_HTTP=127.0.0.1:58079 HTTP=127.0.0.1:58080
KAFKA_LIB=${KAFKA_LIB:-$HOME/.cache/fluxo/kafka-4.1.1/lib}
case $GUARANTEE in
  exactly_once) fluxo_g=exactly_once ks_g=exactly_once_v2 flink_g=exactly_once ;;
  at_least_once) fluxo_g=effectively_once ks_g=at_least_once flink_g=at_least_once ;;
  *) echo "throughput: GUARANTEE: exactly_once or at_least_once" >&2; exit 2 ;;
esac
FLUXO_BIN=${FLUXO_BIN:-$ROOT/target/release/fluxo}
if [[ ! -x $FLUXO_BIN ]]; then cargo build --release --locked --bin fluxo >&2; fi
on() { [[ " $ENGINES " == *" $1 "* ]]; }
if on passthrough && [[ -z ${LOADTEST_BIN:-} ]]; then
  LOADTEST_BIN=$(loadtest_bin)
fi
if on kafka-streams || on flink; then
  [[ -r $PEERS/kstreams/target/classpath.txt && -r $PEERS/flink/target/classpath.txt ]] || "$PEERS/build.sh"
fi
KEYS=${KEYS:-} CACHE_MB=${CACHE_MB:-} INSTANCES=${INSTANCES:-1}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
echo "throughput: results in $OUT" >&2


awk -v g="$fluxo_g" '
  /^\[processors\./ { exit }
  /^processing_guarantee/ { print "processing_guarantee = \"" g "\""; next }
  { print }' "$ROOT/topology.toml" >"$OUT/infra.toml"
export FLUXO_BOOTSTRAP_SERVERS=$BROKER FLUXO_SCHEMA_REGISTRY_URL=$REGISTRY
FLUXO_HTTP_ADDR=$INFRA_HTTP FLUXO_DATA_DIR=$OUT/infra "$FLUXO_BIN" --topology "$OUT/infra.toml" up >"$OUT/infra.log" 2>&1 &
PIDS+=($!)
for ((i = 0; i < 1500; i++)); do grep -q '^ready' "$OUT/infra.log" && break; sleep 0.2; done
BROKER_PID=$(cat "$OUT/infra/kafka/kafka.pid")
printf '{"kind":"run","date":"%s","host":"%s","guarantee":"%s","n":%s,"fluxo":"%s","uptime":"%s","keys":"%s","cache_mb":"%s","instances":%s}\n' \
  "$(date -u +%FT%TZ)" "$(nproc) CPU $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)" \
  "$GUARANTEE" "$N" "$(git -C "$ROOT" describe --always --dirty)" "$(uptime)" "$KEYS" "$CACHE_MB" "$INSTANCES" >>"$RESULTS"

for s in $SCENARIOS; do
  case $s in
    price-change) input=asset-prices sim=prices proc=price-change ks_rule=price-change ;;
    consolidation) input=ledger-entries sim=ledger proc=daily-consolidation ks_rule=consolidation ;;
    *) echo "throughput: scenario $s: price-change or consolidation" >&2; exit 2 ;;
  esac
  D=$OUT/$s; mkdir -p "$D"
  for t in "$s.pt-out" "$s.ks-out" "$s.flink-out"; do
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BROKER" --create --topic "$t" --partitions 3 >/dev/null 2>&1
  done
  awk -v keep="$proc" -v g="$fluxo_g" -v ci="$CHECKPOINT_INTERVAL" -v cache="$CACHE_MB" '
    /^\[/ { k = 1; if ($0 ~ /^\[processors\./) { n = $0; sub(/^\[processors\./, "", n); sub(/[].].*/, "", n); k = (n == keep) } }
    /^processing_guarantee/ { print "processing_guarantee = \"" g "\""; next }
    /^checkpoint_interval/ && ci != "" { print "checkpoint_interval = \"" ci "\""; next }
    /^\[state\]/ && cache != "" { print; print "cache_mb = " cache; next }
    k' "$ROOT/topology.toml" >"$D/topology.toml"
  for ((i = 0; i < INSTANCES; i++)); do
    sed "s/^instance = .*/instance = $i/" "$D/topology.toml" >"$D/topology-$i.toml"
  done
  echo "throughput: $s: preloading $N $sim records into $input${KEYS:+ over $KEYS keys}" >&2
  "$FLUXO_BIN" --topology "$D/topology.toml" produce --simulate "$sim" --count "$N" --seed 21 ${KEYS:+--keys "$KEYS"} 2>"$D/produce.log"
  grep '^produced' "$D/produce.log" >&2 || true
  m() { python3 "$PEERS/measure.py" --broker-pid "$BROKER_PID" --expect "$N" "$@" | tee -a "$RESULTS" >&2; }
  on passthrough && echo "throughput: $s: passthrough" >&2 &&
  m --engine passthrough --mode passthrough --log "$D/passthrough.log" -- \
    "$LOADTEST_BIN" passthrough --bootstrap "$BROKER" --from "$input" --to "$s.pt-out" --expect "$N" \
    --start beginning --timeout-s 900 || true
  on fluxo && ((INSTANCES > 1)) && echo "throughput: $s: $INSTANCES fluxo instances ($fluxo_g)" >&2 &&
  m --engine fluxo --mode fluxo --log "$D/fluxo.log" --metrics "http://$HTTP/metrics" --processor "$proc" \
    --topic "$input" --instances "$INSTANCES" --http-base 127.0.0.1:58090 --data-dir "$D/fluxo" -- \
    "$FLUXO_BIN" --topology "$D/topology-{i}.toml" run || true
  on fluxo && ((INSTANCES == 1)) && echo "throughput: $s: fluxo ($fluxo_g)" >&2 &&
  FLUXO_HTTP_ADDR=$HTTP FLUXO_DATA_DIR=$D/fluxo m --engine fluxo --mode fluxo --log "$D/fluxo.log" \
    --metrics "http://$HTTP/metrics" --processor "$proc" --topic "$input" -- \
    "$FLUXO_BIN" --topology "$D/topology.toml" run || true
  on kafka-streams && echo "throughput: $s: Kafka Streams ($ks_g)" >&2 &&
  m --engine kafka-streams --mode peer --log "$D/ks.log" -- "$PEERS/run.sh" kstreams --rule "$ks_rule" \
    --bootstrap "$BROKER" --input "$input" --output "$s.ks-out" --app-id "ks-tp-$s" --state-dir "$D/ks-state" \
    --guarantee "$ks_g" --expect "$N" || true
  on flink && echo "throughput: $s: Flink ($flink_g)" >&2 &&
  m --engine flink --mode peer --log "$D/flink.log" -- "$PEERS/run.sh" flink --rule "$ks_rule" \
    --bootstrap "$BROKER" --input "$input" --output "$s.flink-out" --group "flink-tp-$s" \
    --guarantee "$flink_g" --expect "$N" || true
  sed -i "s/^{\"engine\"/{\"scenario\":\"$s\",\"engine\"/" "$RESULTS"
done
cleanup
python3 - "$RESULTS" >"$OUT/report.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
run = rows[0]
print(f"Run {run['date']}, {run['host']}, {run['guarantee']}, {run['n']} records per scenario, fluxo {run['fluxo']}")
print(f"uptime at start: {run['uptime']}\n")
for s in dict.fromkeys(r["scenario"] for r in rows[1:] if "scenario" in r):
    print(f"### {s}\n")
    print("| engine | records/s | CPU-s per M (process) | CPU-s per M (broker) | peak RSS MiB | load (start / end) |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows[1:]:
        if r.get("scenario") != s:
            continue
        if "error" in r:
            print(f"| {r['engine']} | {r['error']} | | | | |")
            continue
        print(f"| {r['engine']} | {r['records_per_s']:,.0f} | {r['cpu_s_per_M']:.1f} | {r['broker_cpu_s_per_M']:.1f} | {r['hwm_mib'] or 0:.0f} | {r['load']} |")
    print()
PY
cat "$OUT/report.md"
# The plot (throughput.svg), with matplotlib from the venv benches/loadtest.sh uses.
VENV=${VENV:-$HOME/.cache/fluxo/loadtest-venv}
if ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q 'matplotlib>=3.7,<4' >&2 || true
fi
"$VENV/bin/python" "$PEERS/plot.py" "$OUT/throughput.svg" "$RESULTS" ||
  echo "throughput: no plot (matplotlib missing)" >&2
