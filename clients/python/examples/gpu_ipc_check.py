#!/usr/bin/env python3
"""Weight sync by CUDA IPC, end to end, on a GPU machine with PyTorch and safetensors.

1. ``routereplay make-model --preset small`` writes two checkpoints, seeds 0 and 1.
2. This process loads checkpoint 1 onto the GPU (``safetensors.torch.load_file(..., device="cuda")``, bf16, contiguous).
3. ``serve --device cuda --model CHECKPOINT0`` answers the prompts once (so its prefix cache holds the old weights' KV),
   then gets every tensor of checkpoint 1 in one ``POST /update_weights_from_ipc`` (timed), and answers them again.
4. A fresh ``serve --device cuda --model CHECKPOINT1`` answers the same prompts.
5. Greedy tokens and routing after the update must equal the fresh server's byte for byte, and differ from before it.

Writes a JSON summary (``identical``, ``seconds``, ``tensors``, ``bytes``, ...) to ``--out`` and exits 1 on any difference.

    python3 clients/python/examples/gpu_ipc_check.py --routereplay /tmp/rr/app/routereplay --out /tmp/gpu_ipc_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from routereplay_client import Client, ServeProcess, cli_command  # noqa: E402

PROMPTS = ([9707, 1052, 11, 358, 1079], [785, 6722, 315, 9625, 374, 264, 3460], [151644, 872, 198, 9707, 30])


def answers(client: Client, max_new_tokens: int) -> list:
    """Per prompt, the greedy output ids and the routing exactly as the server wrote it (base64 of the rows)."""
    result = []
    for prompt in PROMPTS:
        out = client.generate(input_ids=list(prompt), sampling_params={"max_new_tokens": max_new_tokens, "temperature": 0},
                              return_routed_experts=True)
        result.append({"output_ids": out["output_ids"], "routed_experts": out["meta_info"]["routed_experts"]})
    return result


def serve(cli: list, model: Path, serve_args: list, env: dict) -> ServeProcess:
    return ServeProcess(cli + ["serve", "--device", "cuda", "--model", str(model), "--port", "0"] + serve_args, env=env, startup_timeout=300).start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routereplay", required=True, help="the routereplay executable or routereplay.dll")
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu_ipc_check.json"))
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--serve-args", nargs="*", default=["--num-blocks", "1024"], help="more serve flags (default: %(default)s)")
    args = parser.parse_args()

    import torch
    from safetensors.torch import load_file

    cli = cli_command(args.routereplay)
    env = dict(os.environ)
    work = Path(tempfile.mkdtemp(prefix="routereplay-ipc-"))
    env.setdefault("ROUTEREPLAY_CACHE", str(work / "cache"))
    models = [work / "seed0", work / "seed1"]
    for seed, folder in enumerate(models):
        subprocess.run(cli + ["make-model", "--preset", "small", "--seed", str(seed), "--out", str(folder)], check=True, env=env)

    tensors = {}
    for file in sorted(models[1].glob("*.safetensors")):
        for name, tensor in load_file(str(file), device="cuda").items():
            tensors[name] = tensor.to(torch.bfloat16).contiguous()
    torch.cuda.synchronize()
    total_bytes = sum(t.numel() * t.element_size() for t in tensors.values())

    with serve(cli, models[0], args.serve_args, env) as server:
        client = Client(server.url)
        before = answers(client, args.max_new_tokens)
        started = time.monotonic()
        reply = client.update_weights_from_ipc(tensors, weight_version="seed1-by-ipc")
        seconds = time.monotonic() - started
        after = answers(client, args.max_new_tokens)
        version = client.model_info(refresh=True).get("weight_version")
    with serve(cli, models[1], args.serve_args, env) as server:
        fresh = answers(Client(server.url), args.max_new_tokens)

    differences = [i for i, (a, b) in enumerate(zip(after, fresh)) if a != b]
    changed = any(a != b for a, b in zip(before, after))
    summary = {
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
        "identical": not differences, "prompts_differing": differences, "weights_changed_the_answers": changed,
        "seconds": round(seconds, 4), "tensors": len(tensors), "bytes": total_bytes,
        "gb_per_second": round(total_bytes / seconds / 1e9, 2) if seconds > 0 else None,
        "reply": reply, "weight_version": version,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0 if summary["identical"] and changed and version == "seed1-by-ipc" else 1


if __name__ == "__main__":
    sys.exit(main())
