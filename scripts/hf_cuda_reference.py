"""Independent reference for the CUDA backend: Hugging Face transformers in bf16 on the GPU.

  python3 scripts/hf_cuda_reference.py make MODEL_DIR [--layers 4] [--seed 0] [--tokenizer DIR]
      Writes a Qwen3-30B-A3B-shaped checkpoint (all shapes real except the layer count) with transformers'
      own random initialisation and save_pretrained, plus the Qwen3 tokenizer files.

  python3 scripts/hf_cuda_reference.py self-agreement MODEL_DIR OUT_JSON [--tokens 40]
      transformers against itself on the same checkpoint (eager attention and experts vs sdpa and its default
      experts), measured as the CUDA check measures RouteReplay against it: the baseline any engine's agreement
      with transformers is read against.

  python3 scripts/hf_cuda_reference.py reference MODEL_DIR OUT_JSON [--tokens 40]
      Loads MODEL_DIR in bf16 with eager attention (and eager experts when the installed transformers lets one
      choose) and, for each of 16 prompts: greedy generation the way generate() does it (one prefill, then one
      token per step through the KV cache; argmax over the tokenizer's tokens, first index on ties), the experts
      transformers chose for every fed token and MoE layer with the router's bf16 logits of the top k+2 experts
      (so a consumer can tell a real difference from a near-tie), and the top-5 logits of a full-prompt forward.

Eager attention is the reference because its rounding points are defined (bf16 scores, fp32 softmax rounded to
bf16, bf16 output); the fused SDPA kernels' depend on which one torch picks.
"""
import argparse
import json
import math
import os
import shutil
import sys

import torch

PROMPTS = [
    "The capital of France is",
    "Hello, world! The capital of France is Paris.",
    "In a mixture-of-experts model, a router picks the top-k experts for every token.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "RL rollouts need the exact routing the sampler saw, token by token and layer by layer.",
    "一个混合专家模型为每个词元选择专家，路由必须被记录下来。",
    "Once upon a time, in a land of paged key-value caches, every block carried its routing rows wherever it went.",
    "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
    "Q: What is a near-tie between two experts? A:",
    "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog.",
    "<|im_start|>user\nSummarize routing replay in one sentence.<|im_end|>\n<|im_start|>assistant\n",
    "Write a haiku about GPUs:",
    "SELECT name, count(*) FROM experts GROUP BY layer ORDER BY 2 DESC;",
    "Les modèles à mélange d'experts choisissent quelques experts pour chaque jeton.",
    "Step 1: load the checkpoint. Step 2: run the prompt. Step 3:",
    "x",
]


def config_30b_shaped(layers):
    from transformers import Qwen3MoeConfig
    config = Qwen3MoeConfig(
        vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=layers,
        num_attention_heads=32, num_key_value_heads=4, head_dim=128, moe_intermediate_size=768,
        num_experts=128, num_experts_per_tok=8, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
        rms_norm_eps=1e-6, rope_theta=1_000_000.0, max_position_embeddings=40960, tie_word_embeddings=False,
        attention_bias=False, bos_token_id=151643, eos_token_id=151645)
    experts = getattr(config, "num_experts", None) or getattr(config, "num_local_experts", None)
    assert experts == 128, f"the config did not take num_experts: {config}"
    return config


def make(args):
    from transformers import Qwen3MoeForCausalLM
    torch.manual_seed(args.seed)
    config = config_30b_shaped(args.layers)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = Qwen3MoeForCausalLM(config)
    model.eval()
    experts = model.model.layers[0].mlp.experts
    shapes = {name: tuple(p.shape) for name, p in experts.named_parameters()}
    print(f"experts module {type(experts).__name__}: {shapes if shapes else 'per-expert modules'}", flush=True)
    os.makedirs(args.model_dir, exist_ok=True)
    model.save_pretrained(args.model_dir)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(args.tokenizer, name), os.path.join(args.model_dir, name))
    size = sum(os.path.getsize(os.path.join(args.model_dir, f)) for f in os.listdir(args.model_dir))
    print(f"wrote {args.model_dir}: {args.layers} layers, {size / 1e9:.2f} GB", flush=True)


def load(model_dir, attention="eager", experts="eager"):
    """The checkpoint in bf16 on the GPU with the given attention and experts implementations ("default": transformers' own)."""
    from transformers import AutoModelForCausalLM
    kwargs = dict(dtype=torch.bfloat16, attn_implementation=attention)
    chosen = "default"
    if experts != "default":
        try:
            model = AutoModelForCausalLM.from_pretrained(model_dir, experts_implementation=experts, **kwargs)
            return model.to("cuda").eval(), experts
        except (TypeError, ValueError) as e:
            print(f"experts_implementation={experts} not accepted ({e}); using the default", flush=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    return model.to("cuda").eval(), chosen


class RouterRecorder:
    """Records, per MoE layer and fed token, the experts transformers chose and the router's bf16 logits."""

    def __init__(self, model, top_k):
        self.top_k = top_k
        self.calls = []
        self.handles = []
        for index, layer in enumerate(model.model.layers):
            gate = getattr(layer.mlp, "gate", None)
            if gate is not None and hasattr(layer.mlp, "experts"):
                self.handles.append(gate.register_forward_hook(self.hook(len(self.handles))))
        self.layers = len(self.handles)

    def hook(self, moe_index):
        def record(module, inputs, output):
            hidden = inputs[0].reshape(-1, module.weight.shape[1])
            logits = torch.nn.functional.linear(hidden, module.weight)
            if isinstance(output, tuple):
                chosen = output[2] if len(output) > 2 else output[1]
            else:
                chosen = torch.topk(torch.softmax(logits, dim=-1, dtype=torch.float), self.top_k, dim=-1).indices
            self.calls.append((moe_index, logits.float().cpu(), chosen.cpu()))
        return record

    def take(self):
        per_layer = [{"experts": [], "logits": []} for _ in range(self.layers)]
        k = self.top_k
        for moe_index, logits, chosen in self.calls:
            for t in range(logits.shape[0]):
                row = logits[t]
                order = sorted(range(row.shape[0]), key=lambda e: (-row[e].item(), e))
                picked = [int(e) for e in chosen[t].tolist()]
                rest = [e for e in order if e not in picked][:2]
                ranked = sorted(picked, key=lambda e: (-row[e].item(), e)) + rest
                per_layer[moe_index]["experts"].append(ranked)
                per_layer[moe_index]["logits"].append([row[e].item() for e in ranked])
        self.calls = []
        return per_layer


def rope_theta(config):
    parameters = getattr(config, "rope_parameters", None)
    if isinstance(parameters, dict) and "rope_theta" in parameters:
        return float(parameters["rope_theta"])
    return float(getattr(config, "rope_theta"))


def greedy_cases(model, tokenizer, tokens):
    """Every prompt: the prompt's top-5 logits, greedy generation through the KV cache, and the router's choices."""
    limit = len(tokenizer)
    recorder = RouterRecorder(model, model.config.num_experts_per_tok)
    cases = []
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            full = model(torch.tensor([ids], device="cuda"), use_cache=False)
            recorder.calls = []
            top = torch.topk(full.logits[0].float(), 5, dim=-1)
            generated, gaps = [], []
            out = model(torch.tensor([ids], device="cuda"), use_cache=True, logits_to_keep=1)
            for step in range(tokens):
                logits = out.logits[0, -1, :limit].float()
                two = torch.topk(logits, 2)
                gaps.append(float(two.values[0] - two.values[1]))
                token = int(torch.argmax(logits))
                generated.append(token)
                if step + 1 == tokens:
                    break
                out = model(torch.tensor([[token]], device="cuda"), past_key_values=out.past_key_values, use_cache=True, logits_to_keep=1)
            cases.append({
                "prompt": prompt,
                "prompt_ids": ids,
                "generated": generated,
                "greedy_top2_gap": gaps,
                "prefill_top5_ids": top.indices.tolist(),
                "prefill_top5_values": top.values.tolist(),
                "router": recorder.take(),
            })
            print(f"reference: {len(ids)} prompt tokens, generated {generated[:8]}...", flush=True)
    for handle in recorder.handles:
        handle.remove()
    return cases, recorder.layers


def reference(args):
    from transformers import AutoTokenizer
    import transformers
    model, experts_impl = load(args.model_dir)
    config = model.config
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    inv = model.model.rotary_emb.inv_freq.double().cpu()
    theta = rope_theta(config)
    exact = torch.tensor([theta ** (-2.0 * i / (2 * inv.shape[0])) for i in range(inv.shape[0])], dtype=torch.float64)
    inv_freq_worst = float(((inv - exact).abs() / exact).max())
    cases, moe_layers = greedy_cases(model, tokenizer, args.tokens)
    result = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(),
        "attn_implementation": "eager",
        "experts_implementation": experts_impl,
        "config_experts_implementation": str(getattr(model.config, "_experts_implementation", None)),
        "config_attn_implementation": str(getattr(model.config, "_attn_implementation", None)),
        "preferred_blas_library": str(torch.backends.cuda.preferred_blas_library()),
        "inv_freq_worst_relative_error_vs_float64": inv_freq_worst,
        "inv_freq": inv.tolist(),
        "top_k": config.num_experts_per_tok,
        "moe_layers": moe_layers,
        "cases": cases,
    }
    with open(args.out_json, "w", encoding="utf-8") as f:
        json.dump(result, f)
    print(f"wrote {args.out_json}: {len(cases)} prompts, {args.tokens} greedy tokens each, experts {experts_impl}", flush=True)


def bf16_steps(gap, value):
    """How many bf16 steps (units in the last place at |value|) a gap spans."""
    magnitude = max(abs(value), 2.0 ** -126)
    return gap / (2.0 ** (math.floor(math.log2(magnitude)) - 7))


def compare_cases(first, second, top_k, tie_steps=2.0):
    """
    Agreement of two runs of the same prompts, as the CUDA check measures it against transformers: greedy tokens equal
    up to the first difference, and per (fed token, MoE layer) the same set of top-k experts, counted over the tokens
    both fed (the prompt and the generated tokens before the first difference). A disagreement is a near-tie when the
    first run's k-th and (k+1)-th router logits are within tie_steps bf16 steps.
    """
    decisions = agree = not_ties = 0
    greedy_equal = []
    per_layer = {}
    for a, b in zip(first, second):
        equal = next((i for i, (x, y) in enumerate(zip(a["generated"], b["generated"])) if x != y), len(a["generated"]))
        greedy_equal.append(equal)
        fed = len(a["prompt_ids"]) + min(equal, len(a["generated"]) - 1)
        for layer, (ra, rb) in enumerate(zip(a["router"], b["router"])):
            for t in range(min(fed, len(ra["experts"]), len(rb["experts"]))):
                same = set(ra["experts"][t][:top_k]) == set(rb["experts"][t][:top_k])
                decisions += 1
                agree += same
                stats = per_layer.setdefault(layer, [0, 0])
                stats[0] += 1
                stats[1] += same
                if not same:
                    logits = ra["logits"][t]
                    if bf16_steps(logits[top_k - 1] - logits[top_k], logits[top_k - 1]) > tie_steps:
                        not_ties += 1
    return {
        "decisions": decisions,
        "agreement": agree / decisions if decisions else 0.0,
        "disagreements_not_near_ties": not_ties,
        "per_layer_agreement": {str(k): v[1] / v[0] for k, v in sorted(per_layer.items())},
        "greedy_equal_tokens": greedy_equal,
        "prompts_with_all_tokens_equal": sum(1 for n, c in zip(greedy_equal, first) if n == len(c["generated"])),
    }


def self_agreement(args):
    """transformers against itself: eager attention and experts vs its default kernels, on the same checkpoint."""
    from transformers import AutoTokenizer
    import inspect
    import transformers
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    runs = {}
    for attention, experts in (("eager", "eager"), ("sdpa", "default")):
        model, used = load(args.model_dir, attention, experts)
        if attention == "eager":
            from transformers.models.qwen3_moe import modeling_qwen3_moe as m
            with open(args.out_json + ".source.txt", "w", encoding="utf-8") as f:
                for name in ("Qwen3MoeTopKRouter", "Qwen3MoeExperts", "Qwen3MoeSparseMoeBlock", "Qwen3MoeRMSNorm", "eager_attention_forward", "apply_rotary_pos_emb"):
                    if hasattr(m, name):
                        f.write(f"# {name}\n{inspect.getsource(getattr(m, name))}\n")
        runs[f"{attention}/{used}"], layers = greedy_cases(model, tokenizer, args.tokens)
        del model
        torch.cuda.empty_cache()
    (name_a, a), (name_b, b) = runs.items()
    top_k = 8
    result = {"transformers": transformers.__version__, "torch": torch.__version__, "first": name_a, "second": name_b,
              "comparison": compare_cases(a, b, top_k)}
    with open(args.out_json, "w", encoding="utf-8") as f:
        json.dump(result, f)
    c = result["comparison"]
    print(f"transformers self-agreement {name_a} vs {name_b}: routing {c['agreement']:.4%} of {c['decisions']} decisions, "
          f"{c['disagreements_not_near_ties']} disagreements beyond two bf16 steps, per layer {c['per_layer_agreement']}; "
          f"greedy: {c['prompts_with_all_tokens_equal']} of {len(a)} prompts equal for all tokens, equal counts {c['greedy_equal_tokens']}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("model_dir")
    m.add_argument("--layers", type=int, default=4)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--tokenizer", default=os.path.join(os.path.dirname(__file__), "..", "assets", "qwen3-tokenizer"))
    r = sub.add_parser("reference")
    r.add_argument("model_dir")
    r.add_argument("out_json")
    r.add_argument("--tokens", type=int, default=40)
    a = sub.add_parser("self-agreement")
    a.add_argument("model_dir")
    a.add_argument("out_json")
    a.add_argument("--tokens", type=int, default=40)
    args = parser.parse_args()
    {"make": make, "reference": reference, "self-agreement": self_agreement}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
