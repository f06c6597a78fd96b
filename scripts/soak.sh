#!/usr/bin/env bash
# Soak test of `routereplay serve` on the built-in tiny model: a KV pool small enough that requests are preempted both
# by swap and by recompute, a mix of requests (streamed and whole, n > 1, completions, chat and /generate, client
# disconnects that abort requests mid-stream, max_tokens from 1 to 100), and at every checkpoint, with the server idle:
# requests, errors, the server's RSS and the KV blocks still in use. Fixed greedy and seeded probe requests are sent
# at the start and at the end; their text, token ids and routing must be byte-identical.
#
# Usage: scripts/soak.sh [--minutes M] [--requests N] [--every N] [--concurrency C] [--out DIR]
#   --minutes M      stop sending new batches after M minutes (default 5)
#   --requests N     or after N requests, whichever comes first (default: no limit)
#   --every N        checkpoint every N requests (default 10000)
#   --concurrency C  requests in flight at once (default 24)
#   --out DIR        logs, probe answers and the checkpoint table (default artifacts/soak)
# ROUTEREPLAY_BIN=path/to/routereplay runs a published binary instead of building the Release CLI.
# Needs curl. Exits non-zero on any failed request, a probe that changed, or blocks in use at idle.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench_common.sh

minutes=5 max_requests=0 every=10000 concurrency=24 out=artifacts/soak
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --requests) max_requests=$2; shift 2 ;;
    --every) every=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "error: unknown argument $1 (see the usage at the top of $0)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
batch=$((concurrency * 20))
[ "$batch" -gt "$every" ] && batch=$every

if [ -n "${ROUTEREPLAY_BIN:-}" ]; then
  server_cmd=("$ROUTEREPLAY_BIN")
else
  build_cli
  server_cmd=(dotnet src/RouteReplay.Cli/bin/Release/net10.0/routereplay.dll)
fi

# 40 blocks of 16 tokens for up to 16 sequences of up to 256 tokens, and a host tier of 16 blocks (16 KiB each on
# tiny): running requests outgrow the pool, so the scheduler swaps while the host tier has room and recomputes after.
"${server_cmd[@]}" serve --port 0 --num-blocks 40 --max-num-seqs 16 --max-num-batched-tokens 128 \
  --max-model-len 256 --swap-space 0.00025 --shutdown-grace-seconds 5 > "$out/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
url=""
for _ in $(seq 1 600); do
  url=$(grep -o "on http://[0-9.:]*" "$out/server.log" | head -1 | cut -c4- || true)
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { echo "error: serve exited; see $out/server.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "error: serve did not start within 60 s; see $out/server.log" >&2; exit 1; }

metric() { # NAME_WITH_LABELS: one sample's value from /metrics
  curl -sf "$url/metrics" | awk -v name="$1" '$1 == name { print $2; exit }'
}
rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$server/status"; }
wait_idle() {
  for _ in $(seq 1 600); do
    [ "$(metric routereplay_running_requests)" = "0" ] && [ "$(metric routereplay_waiting_requests)" = "0" ] \
      && [ "$(metric routereplay_admitted_choices)" = "0" ] && return 0
    sleep 0.1
  done
  echo "error: the server did not become idle within 60 s" >&2
  return 1
}

# Probe answers keep only what must not change: text, token ids, finish reasons and routing.
probe_fields='s/"(id|created|cached_tokens|e2e_latency)":("[^"]*"|[0-9.e+-]+),?//g'
probes() { # DIR
  mkdir -p "$1"
  local i=0 body path
  while IFS='|' read -r path body; do
    curl -sf --max-time 120 "$url$path" -d "$body" | sed -E "$probe_fields" > "$1/$i.json"
    i=$((i + 1))
  done <<'EOF'
/v1/completions|{"prompt": "The capital of France is", "max_tokens": 24, "temperature": 0, "return_routed_experts": true, "return_token_ids": true}
/v1/completions|{"prompt": "Routing replay keeps every expert choice exact", "max_tokens": 40, "temperature": 1, "seed": 7, "n": 3, "return_routed_experts": true, "return_token_ids": true}
/v1/chat/completions|{"messages": [{"role": "user", "content": "Name three prime numbers."}], "max_tokens": 32, "temperature": 0.8, "top_p": 0.9, "seed": 11, "return_routed_experts": true, "return_token_ids": true}
/generate|{"text": "Soak probe: the quick brown fox", "sampling_params": {"max_new_tokens": 48, "temperature": 0}, "return_routed_experts": true}
/generate|{"text": "Soak probe: seeded sampling", "sampling_params": {"max_new_tokens": 48, "temperature": 1.2, "top_k": 50, "seed": 3, "n": 2}, "return_routed_experts": true}
EOF
}

# One request of the mix as a curl config entry; every tenth is a stream the client drops after 50-300 ms.
request_entry() { # REQUEST ENTRY
  local i=$1 kind=$(($1 % 10)) words prompt tokens=(1 3 8 16 32)
  words=$((i % 7 * 5 + 2))
  prompt="Soak request $((i % 499)) of a shared preamble that fills a few blocks: $(printf 'word%.0s ' $(seq 1 $words))"
  local max=${tokens[$((i / 10 % 5))]} seed=$((i % 1000)) path body time=120
  case $kind in
    0 | 1) path=/v1/completions
       body="{\"prompt\": \"$prompt\", \"max_tokens\": $max, \"temperature\": 0, \"return_routed_experts\": $([ $((i % 3)) = 0 ] && echo true || echo false)}" ;;
    2 | 3) path=/v1/completions
       body="{\"prompt\": \"$prompt\", \"max_tokens\": $max, \"temperature\": 1, \"seed\": $seed, \"stream\": true, \"stream_options\": {\"include_usage\": true}}" ;;
    4) path=/v1/completions
       body="{\"prompt\": \"$prompt\", \"max_tokens\": $max, \"temperature\": 1, \"top_p\": 0.9, \"seed\": $seed, \"n\": 4, \"return_routed_experts\": true}" ;;
    5) path=/v1/chat/completions
       body="{\"messages\": [{\"role\": \"user\", \"content\": \"$prompt\"}], \"max_tokens\": $max, \"n\": 2, \"seed\": $seed, \"stream\": true, \"return_routed_experts\": true}" ;;
    6) path=/v1/chat/completions
       body="{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"$prompt\"}], \"max_tokens\": $max, \"temperature\": 0}" ;;
    7) path=/generate
       body="{\"text\": \"$prompt\", \"sampling_params\": {\"max_new_tokens\": $max, \"temperature\": 1, \"top_k\": 20, \"seed\": $seed, \"n\": 3}, \"return_routed_experts\": true}" ;;
    8) path=/generate
       body="{\"text\": \"$prompt\", \"sampling_params\": {\"max_new_tokens\": $max, \"temperature\": 0}, \"stream\": true, \"return_routed_experts\": true}" ;;
    9) path="/v1/completions?client=drops" time=0.$((i % 6 * 5 + 5))
       body="{\"prompt\": \"$prompt\", \"max_tokens\": 100, \"temperature\": 1, \"seed\": $seed, \"n\": $((i % 3 + 1)), \"stream\": true, \"return_routed_experts\": true}" ;;
  esac
  [ "$2" -gt 0 ] && echo next
  printf 'url = "%s%s"\ndata = "%s"\nmax-time = %s\noutput = "/dev/null"\nwrite-out = "%%{http_code} %%{exitcode} %%{url}\\n"\n' \
    "$url" "$path" "${body//\"/\\\"}" "$time"
}

run_batch() { # FIRST COUNT: sends requests FIRST..FIRST+COUNT-1; prints "ok failed aborted"
  local config="$out/batch.curl" i
  : > "$config"
  for ((i = 0; i < $2; i++)); do request_entry $(($1 + i)) "$i" >> "$config"; done
  curl --no-progress-meter --parallel --parallel-max "$concurrency" -K "$config" > "$out/batch.result" 2>> "$out/curl.log" || true
  awk '{ dropped = ($3 ~ /client=drops$/ && $2 == 28) }
       $1 == 200 && $2 == 0 { ok++ ; next }
       dropped { aborted++; next }
       { failed++; print > "/dev/stderr" }
       END { printf "%d %d %d\n", ok, failed, aborted }' "$out/batch.result" 2>> "$out/failures.log"
}

probes "$out/probes-start"
start=$(date +%s)
deadline=$((start + minutes * 60))
sent=0 ok=0 failed=0 aborted=0 next_checkpoint=$every
table="$out/checkpoints.tsv"
: > "$out/failures.log"
printf 'requests\tseconds\tok\tfailed\taborted\trss_mib\tdevice_blocks_used_idle\thost_blocks_used_idle\n' | tee "$table"
checkpoint() {
  wait_idle
  printf '%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n' "$sent" $(($(date +%s) - start)) "$ok" "$failed" "$aborted" "$(rss_mib)" \
    "$(metric 'routereplay_blocks{tier="device",state="used"}')" "$(metric 'routereplay_blocks{tier="host",state="used"}')" | tee -a "$table"
}
checkpoint
while [ "$(date +%s)" -lt "$deadline" ] && { [ "$max_requests" = 0 ] || [ "$sent" -lt "$max_requests" ]; }; do
  count=$batch
  [ "$max_requests" != 0 ] && [ $((max_requests - sent)) -lt "$count" ] && count=$((max_requests - sent))
  read -r b_ok b_failed b_aborted < <(run_batch "$sent" "$count")
  sent=$((sent + count)) ok=$((ok + b_ok)) failed=$((failed + b_failed)) aborted=$((aborted + b_aborted))
  if [ "$sent" -ge "$next_checkpoint" ]; then
    checkpoint
    next_checkpoint=$((next_checkpoint + every))
  fi
done
[ "$(tail -1 "$table" | cut -f1)" = "$sent" ] || checkpoint
probes "$out/probes-end"

elapsed=$(($(date +%s) - start))
identical=yes
diff -r "$out/probes-start" "$out/probes-end" > "$out/probes.diff" || identical=no
used_idle=$(tail -1 "$table" | cut -f7)
host_idle=$(tail -1 "$table" | cut -f8)
echo
echo "requests $sent in ${elapsed} s ($(awk -v n="$sent" -v s="$elapsed" 'BEGIN { printf "%.1f", n / (s > 0 ? s : 1) }')/s):" \
  "$ok ok, $aborted aborted by client disconnects, $failed failed (see $out/failures.log)"
echo "server: $(metric 'routereplay_requests_total{status="ok"}') ok, $(metric 'routereplay_requests_total{status="aborted"}') aborted," \
  "$(metric 'routereplay_requests_total{status="error"}') error; preemptions: $(metric 'routereplay_preemptions_total{mode="swap"}') swap," \
  "$(metric 'routereplay_preemptions_total{mode="recompute"}') recompute; integrity failures $(metric routereplay_routing_integrity_failures_total)"
awk -F'\t' 'NR == 3 { r0 = $1; m0 = $6 } NR > 1 { r = $1; m = $6 }
  END { if (r > r0) printf "RSS %s MiB after warm-up, %s MiB at the end: %+.2f MiB per 10,000 requests\n", m0, m, (m - m0) / (r - r0) * 10000 }' "$table"
echo "blocks in use at idle: device $used_idle, host $host_idle"
echo "probes identical at start and end: $identical"
kill -TERM "$server"
wait "$server" || { echo "error: serve exited with $? on SIGTERM" >&2; exit 1; }
trap - EXIT
[ "$failed" = 0 ] && [ "$identical" = yes ] && [ "$used_idle" = 0 ] && [ "$host_idle" = 0 ]
