#!/usr/bin/env bash
# A stand-in for the fluxo binary that runs `fluxo ... run` under heaptrack from its first
# allocation, for benches/soak.sh (FLUXO_BIN=benches/heaptrack_fluxo.sh). Attaching heaptrack
# later (`heaptrack -p`) stops the process in gdb for long enough to fence its transactional
# producers; preloading avoids that. The process keeps fluxo's own pid (exec), so the soak's
# sampler and its SIGTERM reach fluxo itself; heaptrack's overhead is in the sampled RSS.
#
# Environment: REAL_FLUXO (the fluxo binary), HT_DIR (where heaptrack.zst is written).
# Then: heaptrack_print -f $HT_DIR/heaptrack.zst -F stacks.txt --flamegraph-cost-type peak
#       benches/heaptrack_owners.py stacks.txt
set -euo pipefail
REAL=${REAL_FLUXO:?REAL_FLUXO: the fluxo binary}
if [[ ${!#} == run ]]; then
  dir=${HT_DIR:?HT_DIR: where heaptrack.zst goes}
  mkdir -p "$dir"
  pipe=$dir/pipe
  rm -f "$pipe"
  mkfifo "$pipe"
  # heaptrack's own interpreter reads the preloaded library's trace, as the heaptrack script does.
  /usr/lib/heaptrack/libexec/heaptrack_interpret <"$pipe" | zstd -q -c >"$dir/heaptrack.zst" &
  exec env LD_PRELOAD=/usr/lib/heaptrack/libheaptrack_preload.so DUMP_HEAPTRACK_OUTPUT="$pipe" "$REAL" "$@"
fi
exec "$REAL" "$@"
