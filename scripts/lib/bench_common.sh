# Shared by the end-to-end benchmark scripts: source it after `cd` to the repository root.

# Builds the CLI in Release, quietly.
build_cli() { dotnet build src/RouteReplay.Cli -c Release -v quiet -nologo >/dev/null; }

# Runs the Release CLI.
rr() { dotnet src/RouteReplay.Cli/bin/Release/net10.0/routereplay.dll "$@"; }

# Makes the small preset in DIR unless it is there already.
ensure_small_model() { [ -f "$1/model.safetensors" ] || rr make-model --preset small --out "$1" >/dev/null; }

# Writes the shared-prefix workload to FILE: 64 chat requests sharing one system prompt, each asking "Question i:
# what is i times i+7?" followed by QUESTION_TAIL (may be empty), with MAX_TOKENS each.
write_shared_prefix_prompts() { # FILE MAX_TOKENS QUESTION_TAIL
  local file=$1 max_tokens=$2 tail=$3
  local system="You are a careful assistant for reinforcement-learning rollouts. Think step by step, keep answers short, and explain which experts handled each part of your reasoning."
  : > "$file"
  for i in $(seq 0 63); do
    printf '{"messages": [{"role": "system", "content": "%s"}, {"role": "user", "content": "Question %d: what is %d times %d?%s"}], "max_tokens": %d}\n' \
      "$system" "$i" "$i" "$((i + 7))" "$tail" "$max_tokens" >> "$file"
  done
}
