# Sourced by throughput.sh, latency.sh and diff.sh: what each needs to run processes it stops on
# exit, call Kafka's tools and find the load test binary. Needs KAFKA_LIB set before kafka_tool.

# The processes the script started (brokers, engines, taps), stopped by cleanup, which also runs
# on exit: a failed step never leaves a broker or an engine behind.
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
trap cleanup EXIT

# A tool of Apache Kafka's distribution (topics, consumer groups), its logging at WARN.
kafka_tool() { java -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$KAFKA_LIB/*" "$@"; }

# The path of benches/loadtest.rs's binary (passthrough and latency tap), built if needed.
loadtest_bin() {
  nice -n 10 cargo bench --locked --no-run --bench loadtest --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "loadtest" and m.get("executable"):
        print(m["executable"])'
}
