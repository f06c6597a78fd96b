#!/usr/bin/env bash
# End-to-end generation throughput of the small preset on this machine, in one run:
#   64 concurrent requests against one at a time, and prefix caching on against off.
# Usage: scripts/bench_e2e.sh [OUT_DIR]   (default artifacts/bench-e2e)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-artifacts/bench-e2e}
mkdir -p "$out"
dotnet build src/RouteReplay.Cli -c Release -v quiet -nologo >/dev/null
rr() { dotnet src/RouteReplay.Cli/bin/Release/net10.0/routereplay.dll "$@"; }
[ -f "$out/small/model.safetensors" ] || rr make-model --preset small --out "$out/small" >/dev/null

system="You are a careful assistant for reinforcement-learning rollouts. Think step by step, keep answers short, and explain which experts handled each part of your reasoning."
: > "$out/prompts.jsonl"
for i in $(seq 0 63); do
  printf '{"messages": [{"role": "system", "content": "%s"}, {"role": "user", "content": "Question %d: what is %d times %d?"}], "max_tokens": 32}\n' \
    "$system" "$i" "$i" "$((i + 7))" >> "$out/prompts.jsonl"
done

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
