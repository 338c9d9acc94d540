#!/usr/bin/env bash
# Runs one peer: benches/peers/run.sh kstreams|flink [--name value ...] (see each Main's doc).
# JAVA_OPTS adds JVM options (default: a 1 GiB heap ceiling).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
peer=$1; shift
case $peer in
  kstreams) main=fluxo.peers.ks.Main ;;
  flink) main=fluxo.peers.flink.Main ;;
  *) echo "run.sh: kstreams or flink, not $peer" >&2; exit 2 ;;
esac
[[ -r $here/$peer/target/classpath.txt ]] || { echo "run.sh: build first (benches/peers/build.sh)" >&2; exit 2; }
# Flink on JDK 17 needs the module opens its docs list for Kryo and its own reflection.
opens=(--add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.lang=ALL-UNNAMED
  --add-opens=java.base/java.lang.reflect=ALL-UNNAMED --add-opens=java.base/java.math=ALL-UNNAMED
  --add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.time=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent=ALL-UNNAMED --add-opens=java.base/java.text=ALL-UNNAMED)
# shellcheck disable=SC2086
exec java ${JAVA_OPTS:--Xmx1g} "${opens[@]}" -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
  -cp "$here/$peer/target/classes:$(cat "$here/$peer/target/classpath.txt")" "$main" "$@"
