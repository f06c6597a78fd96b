"""Hugging Face transformers bf16 on the shapes `routereplay bench` measures, on the same GPU, for ratios.

  python3 scripts/hf_bench.py OUT_JSON [--batch-sizes 1,8,64] [--prompt-tokens 512] [--output-tokens 256]
                               [--prefill-requests 8] [--prefill-tokens 2048] [--max-seconds 40]

A Qwen3-30B-A3B model (the real config, random weights initialised on the GPU), its fastest attention (sdpa) and
experts implementation the installed transformers offers. Decode tokens/s at batch B: generate() with greedy
decoding and end-of-sequence ignored, minus a prefill-only generate() of the same prompts, over the tokens after
the first; a run that would take longer than --max-seconds stops early (generate's max_time) and the rate is over
the tokens it made. Prefill tokens/s: one forward of the prompts as one padded batch (all the same length), logits
of the last position only. Also measures the device's copy bandwidth and bf16 GEMM rate through torch, as a check
on `routereplay bench`'s own ceilings.
"""
import argparse
import json
import time

import torch


def ceilings():
    n = 2 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        b.copy_(a)
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    copy = 2 * n / (sorted(times)[5] * 1e-3) / 1e9
    del a, b
    x = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    w = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    for _ in range(3):
        x @ w
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        x @ w
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    gemm = 2 * 8192 ** 3 / (sorted(times)[5] * 1e-3) / 1e12
    del x, w
    torch.cuda.empty_cache()
    return copy, gemm


def build():
    """The fastest experts implementation that runs here: grouped_mm, else transformers' default."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
    config = Qwen3MoeConfig(
        vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=48,
        num_attention_heads=32, num_key_value_heads=4, head_dim=128, moe_intermediate_size=768,
        num_experts=128, num_experts_per_tok=8, norm_topk_prob=True, rms_norm_eps=1e-6, rope_theta=1_000_000.0,
        max_position_embeddings=40960, tie_word_embeddings=False, bos_token_id=151643, eos_token_id=151645)
    config._attn_implementation = "sdpa"
    torch.set_default_dtype(torch.bfloat16)
    for implementation in ("grouped_mm", None):
        model = None
        try:
            if implementation is not None:
                config._experts_implementation = implementation
            torch.manual_seed(0)
            with torch.device("cuda"):
                model = Qwen3MoeForCausalLM(config).eval()
            with torch.no_grad():
                model(torch.randint(0, 1000, (2, 8), device="cuda"))
            model.generation_config.eos_token_id = None
            model.generation_config.pad_token_id = 0
            return model, f"{implementation or 'default'} (config: {getattr(model.config, '_experts_implementation', None)})"
        except Exception as e:  # an implementation this transformers/torch cannot run here
            print(f"experts implementation {implementation}: {type(e).__name__}: {e}", flush=True)
            del model
            torch.cuda.empty_cache()
    raise RuntimeError("no experts implementation ran")


def decode(model, batch, prompt_tokens, output_tokens, max_seconds):
    ids = torch.randint(0, 150_000, (batch, prompt_tokens), device="cuda")
    mask = torch.ones_like(ids)
    common = dict(attention_mask=mask, do_sample=False)
    with torch.no_grad():
        model.generate(ids[:, :16], max_new_tokens=2, min_new_tokens=2, attention_mask=mask[:, :16], do_sample=False)
        torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, **common)
        torch.cuda.synchronize()
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        out = model.generate(ids, max_new_tokens=output_tokens, min_new_tokens=output_tokens, max_time=max_seconds, **common)
        torch.cuda.synchronize()
        total = time.perf_counter() - start
    generated = out.shape[1] - prompt_tokens
    return {"batch": batch, "generated_per_request": generated, "seconds": total, "prefill_seconds": prefill,
            "tokens_per_s": batch * (generated - 1) / max(total - prefill, 1e-9), "stopped_early": generated < output_tokens}


def prefill(model, requests, prompt_tokens):
    ids = torch.randint(0, 150_000, (requests, prompt_tokens), device="cuda")
    with torch.no_grad():
        model(ids[:1, :256], logits_to_keep=1)
        torch.cuda.synchronize()
        start = time.perf_counter()
        model(ids, logits_to_keep=1)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {"requests": requests, "prompt_tokens": prompt_tokens, "seconds": seconds, "tokens_per_s": requests * prompt_tokens / seconds}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_json")
    parser.add_argument("--batch-sizes", default="1,8,64")
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--output-tokens", type=int, default=256)
    parser.add_argument("--prefill-requests", type=int, default=8)
    parser.add_argument("--prefill-tokens", type=int, default=2048)
    parser.add_argument("--max-seconds", type=float, default=40)
    args = parser.parse_args()
    import transformers
    copy, gemm = ceilings()
    print(f"torch ceilings: copy {copy:.0f} GB/s (read+written), bf16 GEMM {gemm:.0f} TFLOP/s", flush=True)
    model, experts = build()
    print(f"transformers {transformers.__version__}, attention sdpa, experts {experts}", flush=True)
    result = {"transformers": transformers.__version__, "torch": torch.__version__, "device": torch.cuda.get_device_name(),
              "attention": "sdpa", "experts": experts, "torch_copy_gigabytes_per_s": copy, "torch_bf16_gemm_teraflops": gemm,
              "decode": [], "prefill": None}
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        run = decode(model, batch, args.prompt_tokens, args.output_tokens, args.max_seconds)
        result["decode"].append(run)
        print(f"transformers decode batch {batch}: {run['tokens_per_s']:.1f} tokens/s over {run['generated_per_request']} tokens", flush=True)
        with open(args.out_json, "w") as f:
            json.dump(result, f, indent=2)
    if args.prefill_requests > 0:
        result["prefill"] = prefill(model, args.prefill_requests, args.prefill_tokens)
        print(f"transformers prefill {args.prefill_requests} x {args.prefill_tokens}: {result['prefill']['tokens_per_s']:.1f} tokens/s", flush=True)
    with open(args.out_json, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
