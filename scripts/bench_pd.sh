#!/usr/bin/env bash
# Prefill/decode split against one server on the same two cores, per preset: bench-serve against one `serve` pinned
# to cores 0-1, then against a router over a prefill server pinned to core 0 and a decode server pinned to core 1.
# The router and the load generator are not pinned in either run. Prints bench-serve's figures for both and the
# transfer bytes per request (the decode server's received bytes over its imported requests). Each preset runs a
# short-prompt (decode-heavy) and a long-prompt (prefill-heavy) load.
# Usage: scripts/bench_pd.sh [tiny|small ...]   (default: tiny small)
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
presets=("$@")
[ ${#presets[@]} -eq 0 ] && presets=(tiny small)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
dotnet build -c Release src/RouteReplay.Cli >/dev/null
rr=(dotnet src/RouteReplay.Cli/bin/Release/net10.0/routereplay.dll)
export ROUTEREPLAY_CACHE="$work/cache"

wait_up() { for _ in $(seq 1 240); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0; sleep 0.5; done; echo "port $1 never came up" >&2; exit 1; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v name="$2" '$1 == name { print $2 }'; }
stop() { kill "$@" 2>/dev/null || true; wait "$@" 2>/dev/null || true; }

run() { # preset label bench-serve-load...
  local preset=$1 label=$2; shift 2
  local model="$work/$preset"
  local serve=(serve --model "$model" --served-model-name "$preset" --weights-version bench --max-num-seqs 32)

  echo "== $preset, $label: one serve on cores 0-1"
  taskset -c 0,1 "${rr[@]}" "${serve[@]}" --port 8040 >"$work/single.log" 2>&1 & local single=$!
  wait_up 8040
  "${rr[@]}" bench-serve --url http://127.0.0.1:8040 --routing on "$@" 2>&1 | tail -2
  stop $single

  echo "== $preset, $label: router, prefill on core 0, decode on core 1"
  taskset -c 0 "${rr[@]}" "${serve[@]}" --role prefill --port 8041 >"$work/prefill.log" 2>&1 & local prefill=$!
  taskset -c 1 "${rr[@]}" "${serve[@]}" --role decode --port 8042 >"$work/decode.log" 2>&1 & local decode=$!
  wait_up 8041; wait_up 8042
  "${rr[@]}" router --prefill http://127.0.0.1:8041 --decode http://127.0.0.1:8042 --port 8040 >"$work/router.log" 2>&1 & local router=$!
  wait_up 8040
  "${rr[@]}" bench-serve --url http://127.0.0.1:8040 --routing on "$@" 2>&1 | tail -1
  local bytes blocks imported fallbacks
  bytes=$(metric 8042 'routereplay_pd_transfer_bytes_total{direction="received"}')
  blocks=$(metric 8042 'routereplay_pd_transfer_blocks_total{direction="received"}')
  imported=$(metric 8042 routereplay_pd_remote_prefills_total)
  fallbacks=$(curl -s http://127.0.0.1:8042/metrics | awk '/^routereplay_pd_fallbacks_total/ { s += $2 } END { print s + 0 }')
  awk -v b="$bytes" -v k="$blocks" -v n="$imported" -v f="$fallbacks" 'BEGIN { printf "transfers: %d requests (warm-up included), %.1f KiB and %.1f blocks per request, %d fallbacks\n", n, b / n / 1024, k / n, f }'
  stop $router $prefill $decode
}

for preset in "${presets[@]}"; do
  "${rr[@]}" make-model --preset "$preset" --out "$work/$preset" >/dev/null
  case "$preset" in
    tiny)
      run tiny "short prompts" --concurrency 16 --requests 64 --max-tokens 64 --prompt-words 200 --rounds 2
      run tiny "long prompts" --concurrency 8 --requests 32 --max-tokens 64 --prompt-words 1500 --rounds 1 --warmup 8 ;;
    *)
      run "$preset" "short prompts" --concurrency 16 --requests 32 --max-tokens 32 --prompt-words 200 --rounds 1
      run "$preset" "long prompts" --concurrency 8 --requests 16 --max-tokens 32 --prompt-words 1500 --rounds 1 --warmup 8 ;;
  esac
done
