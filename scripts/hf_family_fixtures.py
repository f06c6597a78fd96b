"""Tiny checkpoints of the MoE families besides Qwen3-MoE, written by transformers itself, with fp32 references.

Usage: python3 scripts/hf_family_fixtures.py OUT_DIR [FAMILY ...]
       python3 scripts/hf_family_fixtures.py --existing CHECKPOINT_DIR ...

For each family, OUT_DIR/<name>/ receives the checkpoint transformers saves (config.json, model.safetensors in
bfloat16) and reference.json: the model reloaded from those files in fp32 on the CPU (eager attention), a greedy
continuation of a few token-id prompts, and for every position the top-5 logits and, per MoE layer, the router's
logits (recomputed from the router's input and weights), the selected experts and their weights as the router
module returned them. With --existing, each folder (a checkpoint RouteReplay's make-model wrote) gets only
reference.json, so the names and shapes it writes are checked by transformers' own loading. Weights are redrawn so routing is far from uniform (transformers' own initialisation gives
router logits near zero, where every decision is a near-tie).
"""
import json
import math
import os
import re
import sys
import time
import traceback

import torch
import transformers
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM

COMMON = dict(vocab_size=512, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, rms_norm_eps=1e-6,
              tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)

FAMILIES = {
    "olmoe-tiny": ("olmoe", dict(num_key_value_heads=4, intermediate_size=32, num_experts=8, num_experts_per_tok=2,
                                 norm_topk_prob=False, max_position_embeddings=512)),
    "qwen2-moe-tiny": ("qwen2_moe", dict(num_key_value_heads=2, intermediate_size=128, moe_intermediate_size=32,
                                         shared_expert_intermediate_size=64, num_experts=8, num_experts_per_tok=2,
                                         norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[0],
                                         max_position_embeddings=512)),
    "mixtral-tiny": ("mixtral", dict(num_key_value_heads=2, intermediate_size=32, num_local_experts=8,
                                     num_experts_per_tok=2, sliding_window=16, max_position_embeddings=512)),
    "gpt-oss-tiny": ("gpt_oss", dict(num_key_value_heads=2, intermediate_size=32, num_local_experts=8,
                                     num_experts_per_tok=2, head_dim=16, sliding_window=8)),
    "deepseek-v3-tiny": ("deepseek_v3", dict(num_key_value_heads=4, intermediate_size=128, moe_intermediate_size=32,
                                             n_routed_experts=16, num_experts_per_tok=4, n_shared_experts=1, n_group=4,
                                             topk_group=2, first_k_dense_replace=1, routed_scaling_factor=2.5,
                                             norm_topk_prob=True, kv_lora_rank=32, q_lora_rank=48, qk_rope_head_dim=8,
                                             qk_nope_head_dim=16, v_head_dim=16, max_position_embeddings=512)),
    "moonlight-tiny": ("deepseek_v3", dict(num_key_value_heads=4, intermediate_size=128, moe_intermediate_size=32,
                                           n_routed_experts=16, num_experts_per_tok=4, n_shared_experts=2, n_group=1,
                                           topk_group=1, first_k_dense_replace=1, routed_scaling_factor=2.446,
                                           norm_topk_prob=True, kv_lora_rank=32, q_lora_rank=None, qk_rope_head_dim=8,
                                           qk_nope_head_dim=16, v_head_dim=16, max_position_embeddings=512)),
}

PROMPT_LENGTHS = [5, 19, 40]
NEW_TOKENS = 8
ROUTER_NAME = re.compile(r"^model\.layers\.(\d+)\.(mlp|block_sparse_moe)\.(gate|router)$")


def redraw(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    hidden = model.config.hidden_size
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if not tensor.is_floating_point() or "inv_freq" in name:
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if "embed_tokens" in name:
                value = noise
            elif tensor.dim() == 1 and "norm" in name:
                value = 1.0 + 0.1 * noise
            elif tensor.dim() == 1:
                value = 0.1 * noise
            else:
                value = noise / math.sqrt(hidden)
            tensor.copy_(value.to(tensor.dtype))


def load(path: str):
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager",
                                                    output_loading_info=True)
    except TypeError:
        return AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, attn_implementation="eager",
                                                    output_loading_info=True)


def routers(model: torch.nn.Module, num_experts: int) -> dict:
    found = {}
    for name, module in model.named_modules():
        match = ROUTER_NAME.match(name)
        weight = getattr(module, "weight", None)
        if match and isinstance(weight, torch.Tensor) and weight.dim() == 2 and weight.shape[0] == num_experts:
            found[int(match.group(1))] = module
    return found


def capture(modules: dict, top_k: int, sink: dict) -> list:
    handles = []
    for layer, module in modules.items():
        def hook(mod, args, output, layer=layer):
            hidden = args[0].reshape(-1, args[0].shape[-1]).float()
            bias = getattr(mod, "bias", None)
            bias = bias.float() if isinstance(bias, torch.Tensor) else None
            record = {"logits": torch.nn.functional.linear(hidden, mod.weight.float(), bias)}
            for value in output if isinstance(output, (tuple, list)) else (output,):
                if not isinstance(value, torch.Tensor):
                    continue
                if value.dtype in (torch.int64, torch.int32):
                    record["indices"] = value.reshape(hidden.shape[0], -1)
                elif value.numel() == hidden.shape[0] * top_k:
                    record["weights"] = value.reshape(hidden.shape[0], -1).float()
                elif value.shape[-1] == mod.weight.shape[0]:
                    record["returned_logits"] = value.reshape(hidden.shape[0], -1).float()
            sink[layer] = record
        handles.append(module.register_forward_hook(hook))
    return handles


def one_family(out_dir: str, name: str, model_type: str, settings: dict, seed: int) -> None:
    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(seed)
    config = AutoConfig.for_model(model_type, **COMMON, **settings)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    redraw(model, seed)
    model.to(torch.bfloat16).save_pretrained(folder)
    saved = {k: v.clone().float() for k, v in model.state_dict().items()}

    write_reference(folder, name, model_type, seed, saved)


def write_reference(folder: str, name: str, model_type: str, seed: int, saved: dict | None) -> None:
    model, info = load(folder)
    model.eval()
    reloaded = model.state_dict()
    changed = [k for k, v in (saved or {}).items() if k in reloaded and not torch.equal(reloaded[k].float(), v)]
    tensors = {}
    for file in sorted(f for f in os.listdir(folder) if f.endswith(".safetensors")):
        with safe_open(os.path.join(folder, file), framework="pt") as handle:
            for key in handle.keys():
                sl = handle.get_slice(key)
                tensors[key] = {"shape": list(sl.get_shape()), "dtype": str(sl.get_dtype())}

    cfg = model.config
    num_experts = next(getattr(cfg, a) for a in ("num_experts", "num_local_experts", "n_routed_experts")
                       if getattr(cfg, a, None))
    top_k = cfg.num_experts_per_tok
    modules = routers(model, num_experts)
    generator = torch.Generator().manual_seed(seed + 1)
    cases = []
    for length in PROMPT_LENGTHS:
        ids = torch.randint(3, cfg.vocab_size, (length,), generator=generator).tolist()
        with torch.no_grad():
            for _ in range(NEW_TOKENS):
                logits = model(torch.tensor([ids]), use_cache=False).logits[0, -1]
                ids.append(int(torch.argmax(logits)))
            sink = {}
            handles = capture(modules, top_k, sink)
            logits = model(torch.tensor([ids]), use_cache=False).logits[0].float()
            for handle in handles:
                handle.remove()
        top_values, top_ids = torch.topk(logits, 5, dim=-1)
        cases.append({
            "token_ids": ids,
            "prompt_length": length,
            "top_logit_ids": top_ids.tolist(),
            "top_logit_values": top_values.tolist(),
            "router": {str(layer): {key: value.tolist() for key, value in record.items()}
                       for layer, record in sorted(sink.items())},
        })
    result = {
        "name": name,
        "model_type": model_type,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "device": "cpu",
        "dtype": "float32 from bfloat16 files",
        "num_experts": num_experts,
        "top_k": top_k,
        "moe_layers": sorted(modules),
        "router_classes": {str(k): type(v).__name__ for k, v in sorted(modules.items())},
        "missing_keys": sorted(info.get("missing_keys", [])),
        "unexpected_keys": sorted(info.get("unexpected_keys", [])),
        "changed_on_reload": changed,
        "tensors": tensors,
        "cases": cases,
    }
    with open(os.path.join(folder, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(result, f)
    print(f"{name}: {len(tensors)} tensors, moe layers {sorted(modules)}, missing {len(result['missing_keys'])}, "
          f"unexpected {len(result['unexpected_keys'])}, changed {len(changed)}", flush=True)


def existing(folders: list) -> None:
    for index, folder in enumerate(folders):
        name = os.path.basename(os.path.normpath(folder))
        start = time.time()
        try:
            with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
                model_type = json.load(f)["model_type"]
            write_reference(folder, name, model_type, seed=2000 + index, saved=None)
        except Exception:
            print(f"{name}: FAILED", flush=True)
            traceback.print_exc()
        print(f"{name}: {time.time() - start:.1f} s", flush=True)


def main() -> None:
    if sys.argv[1] == "--existing":
        torch.set_num_threads(4)
        existing(sys.argv[2:])
        return
    out_dir = sys.argv[1]
    wanted = sys.argv[2:] or list(FAMILIES)
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(4)
    for index, name in enumerate(wanted):
        model_type, settings = FAMILIES[name]
        start = time.time()
        try:
            one_family(out_dir, name, model_type, settings, seed=1000 + index)
        except Exception:
            print(f"{name}: FAILED", flush=True)
            traceback.print_exc()
            with open(os.path.join(out_dir, f"{name}.error.txt"), "w", encoding="utf-8") as f:
                f.write(traceback.format_exc())
        print(f"{name}: {time.time() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
