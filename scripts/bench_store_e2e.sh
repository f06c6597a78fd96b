#!/usr/bin/env bash
# Block store end to end, small preset, in one run: the shared-prefix workload (64 chat requests sharing a system
# prompt) run by two separate generate processes, the first on a cold store, the second on the store the first
# filled; prefill tokens computed and wall time of each. File store always; Redis too when redis-server is on PATH.
# Usage: scripts/bench_store_e2e.sh [OUT_DIR]   (default artifacts/bench-store-e2e)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-artifacts/bench-store-e2e}")
rm -rf "$out/kv" && mkdir -p "$out"
source scripts/lib/bench_common.sh
build_cli
ensure_small_model "$out/small"

write_shared_prefix_prompts "$out/prompts.jsonl" 16 " Show the partial products and say which digit is carried at each step."

field() { grep -o "\"$1\": [0-9.e+-]*" "$2" | grep -o '[0-9.e+-]*$'; }
run() {
  local name=$1; shift
  rr generate --model "$out/small" --prompts-file "$out/prompts.jsonl" --max-model-len 512 --max-num-seqs 64 \
    --stats-json "$out/$name.json" "$@" 2> "$out/$name.log" >/dev/null
  local prompt generated computed seconds hits
  prompt=$(field prompt_tokens "$out/$name.json"); generated=$(field generated_tokens "$out/$name.json")
  computed=$(field computed_tokens "$out/$name.json"); seconds=$(field elapsed_seconds "$out/$name.json")
  hits=$(field kv_store_hits "$out/$name.json")
  printf '%-14s prompt tokens %6s   prefill tokens computed %6s   store hits %4s blocks   wall %6.2f s\n' \
    "$name" "$prompt" "$((computed - generated + 64))" "$hits" "$seconds"
}
run no-store
run file-cold --kv-store "file:$out/kv"
run file-warm --kv-store "file:$out/kv"
if command -v redis-server >/dev/null; then
  port=6391
  redis-server --port $port --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --pidfile "$out/redis.pid" >/dev/null
  sleep 0.5
  run redis-cold --kv-store "redis://127.0.0.1:$port"
  run redis-warm --kv-store "redis://127.0.0.1:$port"
  kill "$(cat "$out/redis.pid")"
fi
