#!/usr/bin/env bash
# The GPU machine's one command: builds the native library with the machine's CUDA, then runs the kernel tests, the
# device checks and the benchmarks from self-contained .NET publishes (the machine has no .NET SDK), writes every
# result under $OUT and prints a summary table last.
#
#   scripts/device/run.sh --app DIR --checks DIR PHASE...
#
# DIR are trimmed self-contained publishes of src/RouteReplay.Cli and tests/RouteReplay.DeviceChecks
# (scripts/device/prepare.sh makes them). Phases, in the order given:
#   build       native/build.sh for this GPU's architecture, with the kernel tests and the kernel benchmark
#   kernels     every kernel against a host reference, and bit-identity across batches (native/tests)
#   kernel-bench every hot kernel at Qwen3-30B-A3B shapes in CUDA graphs, against the read bandwidth (native/bench)
#   graphs      decode steps replayed from CUDA graphs against --enforce-eager: identical tokens and routing (small
#               and dummy Qwen3-30B-A3B)
#   device-fault a real sticky CUDA error while requests run: they fail promptly and the engine stops
#   replay      the trainer's side: rows from serve --device cuda replayed through a top-k router in PyTorch (or
#               Megatron-Core's) select exactly those experts (clients/python/examples/gpu_replay_check.py)
#   ipc         weight sync by CUDA IPC: a small checkpoint loaded in a Python process is pushed into serve --device cuda
#               with POST /update_weights_from_ipc; tokens and routing equal a fresh server's on that checkpoint
#               (clients/python/examples/gpu_ipc_check.py)
#   weight-sync a full Qwen3-30B-A3B checkpoint written by transformers into /dev/shm (61 GB): serve's load at startup
#               and POST /update_weights_from_disk timed, then the same weights pushed by CUDA IPC from a PyTorch process
#               (per-tensor allocations and one flat buffer; clients/python/examples/gpu_ipc_full.py), beside
#               safetensors' own load_file(device='cuda') in the same run
#   memory-release the GPU shared with a trainer: in process, level 1 and level 2 releases free the KV cache and the
#               weights (cudaMemGetInfo) and requests after the resume equal a fresh engine's; then serve --model small
#               (its KV cache fills the GPU): nvidia-smi's used memory awake, released and resumed, and a request sent
#               while released answered after the resume as before
#   serve-small serve --device cuda --model small (the preset) starts, logs its pool and answers with routing
#   invariance  serve --device cuda (dummy Qwen3-30B-A3B), prefix caching on and off: probes alone and under load
#               return identical tokens and routing
#   cpu-vs-cuda the CUDA backend against the CPU backend on the tiny and small presets
#   families    tiny OLMoE, Qwen2-MoE, Mixtral, gpt-oss and DeepSeek-V3 checkpoints written by transformers
#               (scripts/hf_family_fixtures.py, kept under families/ to commit) and the CPU forward compared with them
#   dummy       Qwen3-30B-A3B dummy weights: reproducible, sane logits, every expert routed
#   lifecycle   every lifecycle path on the GPU: returned rows equal the rows first computed
#   hf          a 4-layer Qwen3-30B-A3B-shaped checkpoint written by transformers; routing and greedy tokens against it
#   serve       serve --device cuda (dummy Qwen3-30B-A3B) at saturation: bench-serve at concurrency 256, ~400-token
#               prompts, 512 output tokens, routing on; no integrity failure
#   bench       routereplay bench on dummy Qwen3-30B-A3B (decode 1/8/64, prefill 8 x 2048, capture on/off, profile)
#   bench-tuning decode at batch 1 and 8 with ROUTEREPLAY_DECODE_TUNING=off, then on (the decode-projection tuning)
#   bench-quick the same with 32 output tokens, one round, two prefill prompts (a smoke test of the benchmark)
#   hf-bench    the same shapes through transformers bf16
#   all         every phase above
# Each phase runs under its own time limit, so a hang still leaves the other phases' results and every log; phases
# are also cut to end by --deadline SECONDS (default 560, inside the GPU machine's 10-minute command limit), leaving
# time to pack the results.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-/tmp/routereplay-out}
work=${ROUTEREPLAY_DEVICE_WORK:-/tmp/routereplay-work}
app=""
checks=""
phases=()
deadline=560
while [ $# -gt 0 ]; do
  case "$1" in
    --app) app=$(cd "$2" && pwd); shift 2 ;;
    --checks) checks=$(cd "$2" && pwd); shift 2 ;;
    --deadline) deadline=$2; shift 2 ;;
    all) phases+=(build kernels kernel-bench graphs cpu-vs-cuda device-fault memory-release replay ipc weight-sync serve-small dummy lifecycle invariance hf serve bench hf-bench); shift ;;
    *) phases+=("$1"); shift ;;
  esac
done
mkdir -p "$out/results" "$out/logs" "$work"
export PYTHONUNBUFFERED=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 ROUTEREPLAY_CACHE="$work/cache"
export ROUTEREPLAY_NATIVE_BUILD="$work/native"
export ROUTEREPLAY_CUDA_LIBRARY="$work/native/libroutereplay_cuda.so"
tokenizer="$app/assets/qwen3-tokenizer"
rows=()

# phase NAME SECONDS COMMAND...: runs one phase with a time limit, logs to $out/logs/NAME.log, records a summary row.
phase() {
  local name=$1 limit=$2
  shift 2
  local left=$((deadline - SECONDS - 15))
  if [ $left -lt 20 ]; then
    rows+=("$(printf '%-12s %-9s' "$name" SKIPPED)")
    return 0
  fi
  [ $limit -gt $left ] && limit=$left
  local start=$SECONDS
  echo "=== $name (limit ${limit}s)"
  timeout -k 10 "$limit" bash -c '"$@"' phase "$@" >"$out/logs/$name.log" 2>&1
  local rc=$?
  local status=PASS
  [ $rc -eq 0 ] || status="FAIL($rc)"
  [ $rc -eq 124 ] && status="TIMEOUT"
  rows+=("$(printf '%-12s %-9s %5ss' "$name" "$status" $((SECONDS - start)))")
  grep -E '^(CHECK|tuning|kernel tests|ceilings|capture|decode batch|prefill|transformers|torch|bench-serve|serve:|serve-small:|weight-sync:|wrote|linear|moe|attention|route|add_rmsnorm|[a-z_]+ +(PASS|FAIL))' "$out/logs/$name.log" | tail -60
  return 0
}

build() {
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
  nvcc --version | tail -2
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
  "$root/native/build.sh" --arch "${arch:-90}" --tests --bench
}

# start_server PORT LOG ARGS...: starts serve in the background and waits for /health (sets $server).
start_server() {
  local port=$1 log=$2
  shift 2
  "$app/routereplay" serve --device cuda --port "$port" "$@" >"$log" 2>&1 &
  server=$!
  for _ in $(seq 1 240); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    kill -0 $server 2>/dev/null || { echo "serve: the server exited"; tail -5 "$log"; return 1; }
    sleep 0.5
  done
  echo "serve: no /health within 120 s"
  return 1
}

# stop_server: SIGTERM (a background job of a non-interactive shell ignores SIGINT), then KILL after 30 s.
stop_server() {
  kill -TERM $server
  for _ in $(seq 1 60); do kill -0 $server 2>/dev/null || return 0; sleep 0.5; done
  echo "serve: the server did not stop on SIGTERM within 30 s"
  kill -KILL $server
}

serve_small() {
  start_server 8124 "$out/logs/serve-small-server.log" --model small || return 1
  curl -s http://127.0.0.1:8124/v1/completions -d '{"prompt": "The capital of France is", "max_tokens": 8, "return_routed_experts": true}' >"$out/results/serve_small.json"
  stop_server
  grep -iE "pool|blocks" "$out/logs/serve-small-server.log" | head -5
  grep -q '"routed_experts"' "$out/results/serve_small.json" && echo "serve-small: answered with routing"
}

# memory_release: the in-process check, then release and resume through a real server, measured with nvidia-smi.
memory_release() {
  local status=0
  "$checks/routereplay-device-checks" "$out/results" memory-release small || status=1
  local url=http://127.0.0.1:8126 r="$out/results/memory_release"
  local body='{"text": "The trainer takes the GPU", "sampling_params": {"max_new_tokens": 16, "temperature": 0}, "return_routed_experts": true}'
  used() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1; }
  start_server 8126 "$out/logs/memory-release-server.log" --model small || return 1
  curl -s $url/generate -d "$body" >"${r}_before.json"
  local awake released resumed
  awake=$(used)
  curl -s -X POST $url/release_memory_occupation -d '{}' >"${r}_release.json"
  released=$(used)
  curl -s $url/generate -d "$body" >"${r}_during.json" &
  local pending=$!
  for _ in $(seq 1 100); do curl -s $url/metrics | grep -qE '^routereplay_waiting_requests [1-9]' && break; sleep 0.1; done
  curl -s -X POST $url/resume_memory_occupation -d '{}' >"${r}_resume.json"
  wait $pending
  resumed=$(used)
  curl -s $url/metrics | grep -E '^routereplay_memory' >"${r}_metrics.txt"
  stop_server
  python3 - "$r" "$awake" "$released" "$resumed" <<'PY'
import json, sys
r, awake, released, resumed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
before, during = (json.load(open(f"{r}_{name}.json")) for name in ("before", "during"))
same = before["output_ids"] == during["output_ids"] and before["meta_info"]["routed_experts"] == during["meta_info"]["routed_experts"]
ok = released < awake // 10 and abs(resumed - awake) <= 1024 and same
print(f"CHECK memory-release-serve {'PASS' if ok else 'FAIL'} nvidia-smi used MiB: awake {awake}, released {released}, resumed {resumed}; "
      f"request sent while released answered as before {same}")
sys.exit(0 if ok else 1)
PY
  [ $? -eq 0 ] && [ $status -eq 0 ]
}

invariance() {
  local status=0
  for caching in on off; do
    local extra=()
    [ $caching = off ] && extra=(--no-prefix-caching)
    start_server 8125 "$out/logs/invariance-$caching-server.log" --load-format dummy --preset qwen3-30b-a3b --max-num-seqs 64 \
      --max-num-batched-tokens 2048 --max-model-len 4096 "${extra[@]}" || return 1
    "$checks/routereplay-device-checks" "$out/results" batch-invariance http://127.0.0.1:8125 "batch-invariance-prefix-caching-$caching" || status=1
    stop_server
  done
  return $status
}

serve() {
  local port=8123
  start_server $port "$out/logs/serve-server.log" --load-format dummy --preset qwen3-30b-a3b --max-num-seqs 256 \
    --max-num-batched-tokens 8192 --max-model-len 2048 || return 1
  "$app/routereplay" bench-serve --url "http://127.0.0.1:$port" --routing on --concurrency 256 --requests 512 \
    --max-tokens 512 --prompt-words 700 --rounds 1 --warmup 32 --json-out "$out/results/bench_serve.json"
  local bench=$?
  curl -s "http://127.0.0.1:$port/metrics" >"$out/results/serve_metrics.txt"
  stop_server
  local failures
  failures=$(grep -E '^routereplay_routing_integrity_failures_total' "$out/results/serve_metrics.txt" | awk '{print $2}')
  local errors
  errors=$(grep -E '^routereplay_requests_total\{status="(error|failed)"\}' "$out/results/serve_metrics.txt" | awk '{s += $2} END {print s + 0}')
  echo "serve: routing integrity failures ${failures:-missing}, failed requests ${errors:-0}"
  grep -E '^routereplay_requests_total' "$out/results/serve_metrics.txt"
  [ $bench -eq 0 ] && [ "${failures:-x}" = "0" ] && [ "${errors:-0}" = "0" ]
}

# weight_sync: the full-size checkpoint in /dev/shm, serve's startup load, two timed updates, safetensors' own rate.
weight_sync() {
  local dir=/dev/shm/qwen3-30b-a3b port=8127 r="$out/results/weight_sync"
  python3 "$root/scripts/hf_cuda_reference.py" make "$dir" --layers 48 --tokenizer "$tokenizer" || return 1
  local bytes
  bytes=$(du -sb "$dir" | awk '{print $1}')
  local t0=$SECONDS
  start_server $port "$out/logs/weight-sync-server.log" --model "$dir" --num-blocks 2048 --max-model-len 4096 --weights-version w0 || return 1
  echo "weight-sync: serve up in $((SECONDS - t0)) s (load, KV allocation and startup) for $bytes bytes"
  for v in 1 2; do
    curl -s -o "$r-update-$v.json" -w "weight-sync: update_weights_from_disk $v: HTTP %{http_code} in %{time_total} s\n" \
      "http://127.0.0.1:$port/update_weights_from_disk" -d "{\"model_path\": \"$dir\", \"weight_version\": \"w$v\"}"
  done
  curl -s "http://127.0.0.1:$port/v1/completions" -d '{"prompt": "The capital of France is", "max_tokens": 4, "return_routed_experts": true}' >"$r-after.json"
  grep -q routed_experts "$r-after.json" && echo "weight-sync: answered after the updates"
  # The trainer's side on the same GPU: the same weights pushed by CUDA IPC (the KV pool is kept small so they fit twice).
  python3 "$root/clients/python/examples/gpu_ipc_full.py" --url "http://127.0.0.1:$port" --model-dir "$dir" --out "$r-ipc.json"
  local ipc=$?
  stop_server
  python3 - "$dir" <<'PY'
import glob, sys, time, torch
from safetensors.torch import load_file
files = sorted(glob.glob(sys.argv[1] + "/*.safetensors"))
start = time.perf_counter(); total = 0
for f in files:
    tensors = load_file(f, device="cuda")
    total += sum(t.numel() * t.element_size() for t in tensors.values())
    del tensors
torch.cuda.synchronize()
seconds = time.perf_counter() - start
print(f"weight-sync: safetensors load_file(device='cuda'): {total / 1e9:.1f} GB in {seconds:.2f} s ({total / 1e9 / seconds:.1f} GB/s)")
PY
  rm -rf "$dir"
  return $ipc
}

hf() {
  python3 "$root/scripts/hf_cuda_reference.py" make "$work/hf4" --layers 4 --tokenizer "$tokenizer" &&
    python3 "$root/scripts/hf_cuda_reference.py" reference "$work/hf4" "$out/results/hf_reference.json" --tokens 40 &&
    "$checks/routereplay-device-checks" "$out/results" hf-compare "$work/hf4" "$out/results/hf_reference.json"
}

# The other MoE families: tiny checkpoints transformers writes (kept in $out/families to commit as fixtures) and the
# CPU forward compared with them.
families() {
  python3 "$root/scripts/hf_family_fixtures.py" "$out/families" &&
    "$checks/routereplay-device-checks" "$out/results" families "$out/families"
  local made=() preset
  for preset in olmoe-tiny qwen2-moe-tiny mixtral-tiny gpt-oss-tiny deepseek-v3-tiny; do
    "$app/routereplay" make-model --preset "$preset" --out "$work/made/$preset" >/dev/null && made+=("$work/made/$preset")
  done
  python3 "$root/scripts/hf_family_fixtures.py" --existing "${made[@]}" &&
    "$checks/routereplay-device-checks" "$out/results/made" families "$work/made"
}

# bench_tuning: decode at batch 1 and 8 with the decode-projection tuning off and on, one after the other.
bench_tuning() {
  local t
  for t in off on; do
    ROUTEREPLAY_DECODE_TUNING=$t "$app/routereplay" bench --device cuda --load-format dummy --preset qwen3-30b-a3b --batch-sizes 1,8 \
      --prompt-tokens 512 --output-tokens 64 --prefill-requests 1 --prefill-tokens 512 --rounds 1 --max-num-seqs 8 \
      --max-num-batched-tokens 4096 --max-model-len 4096 --json-out "$out/results/bench_tuning_$t.json" || return 1
  done
}

bench() {
  "$app/routereplay" bench --device cuda --load-format dummy --preset qwen3-30b-a3b --batch-sizes 1,8,64,128,256 \
    --prompt-tokens 512 --output-tokens 256 --prefill-requests 8 --prefill-tokens 2048 --rounds 1 --profile \
    --max-num-seqs 256 --max-num-batched-tokens 16384 --max-model-len 4096 --json-out "$out/results/bench.json"
}

export root out work app checks tokenizer
export -f build serve hf families bench bench_tuning weight_sync start_server stop_server serve_small invariance memory_release
for p in "${phases[@]}"; do
  case "$p" in
    build) phase build 240 build ;;
    kernels) phase kernels 180 "$work/native/kernel_tests" ;;
    kernel-bench) phase kernel-bench 180 "$work/native/kernel_bench" "$out/results/kernel_bench.json" ;;
    weight-sync) phase weight-sync 560 weight_sync ;;
    ipc) phase ipc 180 python3 "$root/clients/python/examples/gpu_ipc_check.py" --routereplay "$app/routereplay" --out "$out/results/gpu_ipc_check.json" ;;
    replay) phase replay 180 python3 "$root/clients/python/examples/gpu_replay_check.py" --routereplay "$app/routereplay" --out "$out/results/gpu_replay_check.json" ;;
    graphs) phase graphs 180 bash -c "'$checks/routereplay-device-checks' '$out/results' cuda-graphs small; a=\$?; '$checks/routereplay-device-checks' '$out/results/30b' cuda-graphs qwen3-30b-a3b; exit \$((a | \$?))" ;;
    device-fault) phase device-fault 120 "$checks/routereplay-device-checks" "$out/results" device-fault small ;;
    memory-release) phase memory-release 240 memory_release ;;
    serve-small) phase serve-small 120 serve_small ;;
    invariance) phase invariance 300 invariance ;;
    cpu-vs-cuda) phase cpu-vs-cuda 180 bash -c "'$checks/routereplay-device-checks' '$out/results' cpu-vs-cuda tiny; a=\$?; '$checks/routereplay-device-checks' '$out/results' cpu-vs-cuda small; exit \$((a | \$?))" ;;
    dummy) phase dummy 180 "$checks/routereplay-device-checks" "$out/results" dummy qwen3-30b-a3b 2048 ;;
    lifecycle) phase lifecycle 240 "$checks/routereplay-device-checks" "$out/results" lifecycle small ;;
    hf) phase hf 420 hf ;;
    families) phase families 240 families ;;
    serve) phase serve 300 serve ;;
    bench) phase bench 420 bench ;;
    bench-tuning) phase bench-tuning 300 bench_tuning ;;
    bench-quick) phase bench-quick 240 "$app/routereplay" bench --device cuda --load-format dummy --preset qwen3-30b-a3b \
      --batch-sizes 1,8,64 --prompt-tokens 512 --output-tokens 32 --prefill-requests 2 --prefill-tokens 2048 --rounds 1 --profile \
      --max-num-seqs 64 --max-num-batched-tokens 16384 --max-model-len 4096 --json-out "$out/results/bench_quick.json" ;;
    hf-bench) phase hf-bench 420 python3 "$root/scripts/hf_bench.py" "$out/results/hf_bench.json" --max-seconds ${HF_BENCH_MAX_SECONDS:-40} ;;
    *) echo "unknown phase '$p'"; rows+=("$(printf '%-12s %-9s' "$p" UNKNOWN)") ;;
  esac
done

[ -f "$out/results/bench.json" ] && cp "$out/results/bench.json" "$out/bench.json"
[ -f "$out/results/hf_bench.json" ] && cp "$out/results/hf_bench.json" "$out/hf_bench.json"
{
  echo
  grep -h -E '^(CHECK|kernel tests:|serve:|transformers (decode|prefill)|torch ceilings)' "$out"/logs/*.log 2>/dev/null
  echo
  echo "phase        status    time"
  printf '%s\n' "${rows[@]}"
} >"$out/summary.txt"
tar czf "$out/results.tar.gz" -C "$out" results && rm -rf "$out/results"
tar czf "$out/logs.tar.gz" -C "$out" logs && rm -rf "$out/logs"
cat "$out/summary.txt"
