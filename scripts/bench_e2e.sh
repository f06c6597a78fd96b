#!/usr/bin/env bash
# End-to-end generation throughput of the small preset on this machine, in one run:
#   64 concurrent requests against one at a time, and prefix caching on against off.
# Usage: scripts/bench_e2e.sh [OUT_DIR]   (default artifacts/bench-e2e)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-artifacts/bench-e2e}
mkdir -p "$out"
source scripts/lib/bench_common.sh
build_cli
ensure_small_model "$out/small"

write_shared_prefix_prompts "$out/prompts.jsonl" 32 ""

run() {
  local name=$1; shift
  rr generate --model "$out/small" --prompts-file "$out/prompts.jsonl" --max-model-len 512 \
    --stats-json "$out/$name.json" "$@" 2> "$out/$name.log" >/dev/null
  local rate hits
  rate=$(grep -o '"generated_tokens_per_second": [0-9.]*' "$out/$name.json" | grep -o '[0-9.]*$')
  hits=$(grep -o '"prefix_cache_hit_tokens": [0-9]*' "$out/$name.json" | grep -o '[0-9]*$')
  printf '%-28s %10.1f generated tokens/s   prefix-cache hit tokens %s\n' "$name" "$rate" "$hits"
}
run concurrent-64 --max-num-seqs 64
run one-at-a-time --max-num-seqs 1
run concurrent-64-no-prefix --max-num-seqs 64 --no-prefix-caching
