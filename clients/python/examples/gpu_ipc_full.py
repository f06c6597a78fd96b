#!/usr/bin/env python3
"""A full checkpoint pushed to a running server by CUDA IPC, timed, the way a trainer on the same GPU would.

The server must be ``serve --device cuda --model DIR`` with KV small enough that a second copy of the weights fits
beside it (``--num-blocks``). This process loads DIR's safetensors onto the GPU and sends them twice:

1. ``per-tensor``: each tensor its own allocation, as ``load_file(..., device="cuda")`` leaves them (one IPC handle per
   allocation, the trainer's usual state);
2. ``flat``: every tensor a view of one flat buffer (one handle), as trainers that bucket parameters hold them.

The weights are the server's own, so greedy tokens and routing after each update must equal those before it, while
the fingerprint changes (the prefix cache of the old version is not reused). Writes a JSON summary to ``--out``.

    python3 clients/python/examples/gpu_ipc_full.py --url http://127.0.0.1:8127 --model-dir /dev/shm/qwen3-30b-a3b --out ipc.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from routereplay_client import Client, ipc_weights_request, release_shared_tensors  # noqa: E402
from routereplay_client.ipc import REF_COUNTER_HEADER_BYTES  # noqa: E402

PROMPTS = ([9707, 1052, 11, 358, 1079], [785, 6722, 315, 9625, 374, 264, 3460])


def answers(client: Client) -> list:
    result = []
    for prompt in PROMPTS:
        out = client.generate(input_ids=list(prompt), sampling_params={"max_new_tokens": 8, "temperature": 0}, return_routed_experts=True)
        result.append({"output_ids": out["output_ids"], "routed_experts": out["meta_info"]["routed_experts"]})
    return result


def load_per_tensor(files: list) -> dict:
    import torch
    from safetensors.torch import load_file

    tensors = {}
    for file in files:
        for name, tensor in load_file(str(file), device="cuda").items():
            tensors[name] = tensor.to(torch.bfloat16).contiguous()
    torch.cuda.synchronize()
    return tensors


def load_flat(files: list) -> tuple:
    import torch
    from safetensors import safe_open

    shapes = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                shapes[name] = list(handle.get_slice(name).get_shape())
    total = sum(_elements(shape) for shape in shapes.values())
    flat = torch.empty(total, dtype=torch.bfloat16, device="cuda")
    views, offset = {}, 0
    for file in files:
        with safe_open(str(file), framework="pt", device="cuda") as handle:
            for name in handle.keys():
                count = _elements(shapes[name])
                view = flat[offset:offset + count].view(shapes[name])
                view.copy_(handle.get_tensor(name).to(torch.bfloat16))
                views[name] = view
                offset += count
    torch.cuda.synchronize()
    return flat, views


def _elements(shape: list) -> int:
    count = 1
    for d in shape:
        count *= d
    return count


def counter_probe() -> dict:
    """PyTorch's counter of a freshly shared storage sits where release_shared_tensors reads it, at 1; releasing it
    lets the storage be freed as soon as it is dropped."""
    import mmap
    import struct
    import torch

    before = torch.cuda.memory_allocated()
    probe = torch.ones(1 << 20, dtype=torch.bfloat16, device="cuda")
    counters = []
    ipc_weights_request({"probe": probe, "probe_view": probe[16:]}, counters=counters)
    (counter_file, index), = counters
    path = "/dev/shm/" + counter_file.decode().lstrip("/")
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        (value,) = struct.unpack_from("<q", mapped, REF_COUNTER_HEADER_BYTES + index * 8)
    released = release_shared_tensors(counters)
    del probe
    torch.cuda.ipc_collect()
    return {"counter_after_share": value, "released": released, "freed": torch.cuda.memory_allocated() == before}


def push(client: Client, tensors: dict, version: str) -> dict:
    started = time.monotonic()
    reply = client.update_weights_from_ipc(tensors, weight_version=version)
    seconds = time.monotonic() - started
    handles = len({t.untyped_storage().data_ptr() for t in tensors.values()})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    return {"seconds": round(seconds, 3), "tensors": len(tensors), "allocations": handles, "bytes": total,
            "gb_per_second": round(total / seconds / 1e9, 1), "reply": reply}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import torch

    client = Client(args.url)
    files = sorted(Path(args.model_dir).glob("*.safetensors"))
    before = answers(client)
    summary = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "counter_probe": counter_probe()}
    print(f"weight-sync: PyTorch's IPC counter probe: {summary['counter_probe']}")

    started = time.monotonic()
    tensors = load_per_tensor(files)
    summary["trainer_load_seconds"] = round(time.monotonic() - started, 1)
    summary["per_tensor"] = push(client, tensors, "ipc-per-tensor")
    summary["per_tensor"]["same_answers"] = answers(client) == before
    del tensors
    torch.cuda.ipc_collect()
    torch.cuda.empty_cache()
    summary["per_tensor"]["trainer_bytes_left_after_drop"] = torch.cuda.memory_allocated()

    flat, views = load_flat(files)
    summary["flat"] = push(client, views, "ipc-flat")
    summary["flat"]["same_answers"] = answers(client) == before
    summary["weight_version"] = client.model_info(refresh=True).get("weight_version")
    del views, flat
    torch.cuda.ipc_collect()
    summary["flat"]["trainer_bytes_left_after_drop"] = torch.cuda.memory_allocated()

    Path(args.out).write_text(json.dumps(summary, indent=2))
    for form in ("per_tensor", "flat"):
        r = summary[form]
        print(f"weight-sync: update_weights_from_ipc ({form}): {r['bytes'] / 1e9:.1f} GB, {r['tensors']} tensors in "
              f"{r['allocations']} allocations, {r['seconds']} s ({r['gb_per_second']} GB/s); answers unchanged: {r['same_answers']}; "
              f"trainer memory left after dropping the tensors: {r['trainer_bytes_left_after_drop']} bytes")
    probe = summary["counter_probe"]
    ok = (summary["per_tensor"]["same_answers"] and summary["flat"]["same_answers"] and summary["weight_version"] == "ipc-flat"
          and probe == {"counter_after_share": 1, "released": 1, "freed": True}
          and all(summary[form]["trainer_bytes_left_after_drop"] < (1 << 30) for form in ("per_tensor", "flat")))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
