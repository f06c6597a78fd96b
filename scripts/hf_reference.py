"""Independent reference for the CPU forward: Hugging Face transformers in fp32 with TF32 off.

Usage: python3 scripts/hf_reference.py MODEL_DIR PROMPTS_JSON OUT_JSON

PROMPTS_JSON is a list of strings; each is tokenized with the checkpoint's tokenizer (no special tokens added).
OUT_JSON holds, per prompt: the token ids, per position the top-5 logits (ids and values), and per MoE layer and
position the router's top-(k+1) experts by probability with their router logits, so a consumer can tell a real
routing difference from a near-tie between the k-th and (k+1)-th expert.
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> None:
    model_dir, prompts_path, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    config = model.config
    top_k = config.num_experts_per_tok
    moe_layers = [i for i in range(config.num_hidden_layers)
                  if i not in config.mlp_only_layers and config.num_experts > 0
                  and (i + 1) % config.decoder_sparse_step == 0]
    prompts = json.load(open(prompts_path, encoding="utf-8"))
    cases = []
    for prompt in prompts:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = model(torch.tensor([ids], device=device), output_router_logits=True, use_cache=False)
        logits = out.logits[0].float()
        top_values, top_ids = torch.topk(logits, 5, dim=-1)
        router = []
        assert len(out.router_logits) == len(moe_layers), (len(out.router_logits), moe_layers)
        for layer_logits in out.router_logits:
            layer_logits = layer_logits.float().reshape(len(ids), -1)
            probs = torch.softmax(layer_logits, dim=-1)
            _, experts = torch.topk(probs, top_k + 1, dim=-1)
            router.append({
                "experts": experts.tolist(),
                "logits": torch.gather(layer_logits, 1, experts).tolist(),
            })
        cases.append({
            "prompt": prompt,
            "token_ids": ids,
            "top_logit_ids": top_ids.tolist(),
            "top_logit_values": top_values.tolist(),
            "router": router,
        })
    result = {
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "device": device,
        "moe_layers": moe_layers,
        "top_k": top_k,
        "cases": cases,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
