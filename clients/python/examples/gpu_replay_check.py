#!/usr/bin/env python3
"""End-to-end replay check for a GPU machine with PyTorch.

Starts ``routereplay serve --device cuda`` (or uses ``--url``), gathers the routing rows of a few rollouts (single and
multi-turn, n > 1) from ``/generate``, turns them into Megatron-Core replay data with ``to_megatron_replay`` (one packed
micro-batch), and replays them through a top-k router, one per MoE layer:

* Megatron-Core's ``TopKRouter`` with ``moe_enable_routing_replay`` and ``RouterReplayAction.REPLAY_FORWARD`` when
  ``megatron.core`` imports and a single-process model-parallel group can be set up;
* otherwise the same top-k router in plain PyTorch (a gate, Megatron's replay rule ``probs = scores.gather(1, indices)``,
  softmax over the selected logits, dispatch to per-expert FFNs).

It checks that every token is sent to exactly the experts of its row (the router's routing map, and in the PyTorch
router the experts that actually computed the token), and, in the PyTorch router, that the gate's gradient reaches only
experts some token was routed to. The expected experts are read from the served rows directly, not through the
conversion, so a wrong token offset or layer in ``to_megatron_replay`` is a mismatch too. The summary also counts the
tokens whose router, left to its own top-k, would have chosen other experts (those the replay overrode). Megatron-Core's
router is checked on its own, not inside a whole model. Writes a JSON summary (``--out``, default ``$OUT/gpu_replay_check.json``) and exits 1
on any mismatch.

    python3 clients/python/examples/gpu_replay_check.py --routereplay /tmp/rr/app/routereplay --serve-args "--device cuda --model small"
    python3 clients/python/examples/gpu_replay_check.py --url http://127.0.0.1:8000

Without a GPU it runs the same on the CPU (``--serve-args ""`` serves the tiny preset there).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from routereplay_client import Client, RoutingAccumulator, ServeProcess, cli_command, to_megatron_replay  # noqa: E402

PROMPTS = ([9707, 1052, 11, 358, 1079], [785, 6722, 315, 9625, 374], [151644, 872, 198, 9707])
FOLLOW_UPS = ([198, 785, 6722], [30, 1052, 1052])


def gather_rollouts(client: Client, max_new_tokens: int) -> list:
    """Rows ``[T-1, num_hidden_layers, K]`` of: each prompt alone (n = 2), and one three-turn rollout gathered with a start."""
    sequences = []
    for prompt in PROMPTS:
        answers = client.generate(input_ids=prompt, sampling_params={"max_new_tokens": max_new_tokens, "n": 2, "seed": 1},
                                  return_routed_experts=True)
        for answer in answers:
            assert answer["routing"].shape[0] == len(prompt) + len(answer["output_ids"]) - 1
            sequences.append(answer["routing"])
    acc = RoutingAccumulator()
    tokens = list(PROMPTS[0])
    for follow_up in ((),) + FOLLOW_UPS:
        tokens = tokens + list(follow_up)
        out = client.generate(input_ids=tokens, sampling_params={"max_new_tokens": max_new_tokens, "temperature": 0},
                              return_routed_experts=True, routed_experts_start_len=acc.next_start)
        acc.add(out["routing"], out["routing_start"])
        tokens = tokens + out["output_ids"]
    whole = client.generate(input_ids=tokens[:-1], sampling_params={"max_new_tokens": 1, "temperature": 0}, return_routed_experts=True)
    if not np.array_equal(acc.rows, whole["routing"]):
        raise AssertionError("the multi-turn rows gathered with a start differ from the whole sequence's rows")
    sequences.append(acc.rows)
    return sequences


def expected_sets(sequences: list, moe_layers: list) -> list:
    """
    Per MoE layer, the expert set each token of the packed batch must be sent to, read from the served rows directly
    (not through ``to_megatron_replay``): a sequence's ``T-1`` rows, then its last token's placeholder (the row before).
    """
    per_layer = []
    for layer in moe_layers:
        sets = []
        for rows in sequences:
            sets.extend(frozenset(rows[t, layer].tolist()) for t in range(len(rows)))
            sets.append(frozenset(rows[-1, layer].tolist()))
        per_layer.append(sets)
    return per_layer


def megatron_check(replay, num_experts: int, topk: int, hidden: int, device) -> dict:
    """Megatron-Core's own TopKRouter in REPLAY_FORWARD; raises ImportError or RuntimeError when it cannot run here."""
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state
    from megatron.core.transformer.moe.router import TopKRouter
    from megatron.core.transformer.moe.router_replay import RouterReplay, RouterReplayAction
    from megatron.core.transformer.transformer_config import TransformerConfig

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    parallel_state.initialize_model_parallel(1, 1)
    config = TransformerConfig(
        num_layers=len(replay), hidden_size=hidden, num_attention_heads=4, num_moe_experts=num_experts, moe_router_topk=topk,
        moe_router_load_balancing_type="none", moe_enable_routing_replay=True, moe_aux_loss_coeff=0.0, use_cpu_initialization=True,
    )
    RouterReplay.clear_global_router_replay_instances()
    routers = [TopKRouter(config).to(device) for _ in replay]
    if len(RouterReplay.global_router_replay_instances) != len(routers):
        raise RuntimeError(f"{len(routers)} routers made {len(RouterReplay.global_router_replay_instances)} RouterReplay instances")
    RouterReplay.set_replay_data(replay)
    RouterReplay.set_global_router_replay_action(RouterReplayAction.REPLAY_FORWARD)
    selected = []
    tokens = replay[0].shape[0]
    for router in routers:
        hidden_states = torch.randn(tokens, 1, hidden, device=device)
        _, routing_map = router(hidden_states)
        selected.append([frozenset(torch.nonzero(row).flatten().tolist()) for row in routing_map.cpu()])
    RouterReplay.clear_global_router_replay_action()
    return {"router": "megatron-core TopKRouter", "selected": selected}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pytorch_check(replay, num_experts: int, topk: int, hidden: int, device) -> dict:
    """The same top-k router in plain PyTorch: replay as Megatron does it, then dispatch to per-expert FFNs."""
    import torch

    torch.manual_seed(0)
    selected, computed, gradient_leaks, overridden = [], [], 0, 0
    for indices in replay:
        tokens = indices.shape[0]
        gate = torch.nn.Linear(hidden, num_experts, bias=False, device=device)
        experts = torch.nn.ModuleList(torch.nn.Linear(hidden, hidden, device=device) for _ in range(num_experts))
        x = torch.randn(tokens, 1, hidden, device=device)
        logits = gate(x).view(-1, num_experts)  # Megatron flattens [seq, batch, hidden] seq-major
        top = indices.to(logits.device)
        probs = torch.softmax(logits.gather(1, top), dim=-1)  # REPLAY_FORWARD: scores.gather(1, indices); softmax after top-k
        routing_map = torch.zeros_like(logits, dtype=torch.bool).scatter(1, top, True)
        natural = torch.zeros_like(routing_map).scatter(1, logits.topk(top.shape[1], dim=-1).indices, True)
        overridden += int((natural != routing_map).any(dim=-1).sum().item())
        flat = x.view(-1, hidden)
        output = torch.zeros_like(flat)
        ran = [set() for _ in range(tokens)]
        for expert in range(num_experts):
            token_ids, slot = torch.nonzero(top == expert, as_tuple=True)
            if len(token_ids) == 0:
                continue
            output.index_add_(0, token_ids, experts[expert](flat[token_ids]) * probs[token_ids, slot].unsqueeze(-1))
            for t in token_ids.tolist():
                ran[t].add(expert)
        output.sum().backward()
        used = torch.zeros(num_experts, dtype=torch.bool, device=logits.device)
        used[top.flatten()] = True
        gradient_leaks += int(gate.weight.grad[~used].abs().sum().item() != 0.0)
        selected.append([frozenset(torch.nonzero(row).flatten().tolist()) for row in routing_map.cpu()])
        computed.append([frozenset(s) for s in ran])
    return {"router": "plain PyTorch top-k router", "selected": selected, "computed": computed, "gradient_leaks": gradient_leaks,
            "overridden": overridden}


def count_mismatches(result: dict, expected: list) -> dict:
    """Tokens whose selected (and, where the router reports it, computed) experts differ from ``expected``, per kind."""
    mismatches = {}
    for kind in ("selected", "computed"):
        if kind not in result:
            continue
        if len(result[kind]) != len(expected):
            raise AssertionError(f"the router reported {len(result[kind])} MoE layers, not {len(expected)}")
        count = 0
        for got, want in zip(result[kind], expected):
            count += abs(len(got) - len(want)) + sum(a != b for a, b in zip(got, want))
        mismatches[kind] = count
    return mismatches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running RouteReplay server (else --routereplay starts one)")
    parser.add_argument("--routereplay", help="the routereplay executable or routereplay.dll to start serve with")
    parser.add_argument("--serve-args", default="--device cuda --model small", help="serve's flags (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=64, help="hidden size of the replaying routers (their inputs are random)")
    parser.add_argument("--force-pytorch", action="store_true", help="skip Megatron-Core even when it imports")
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu_replay_check.json"))
    args = parser.parse_args()
    if not args.url and not args.routereplay:
        parser.error("give --url or --routereplay")

    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    started = time.monotonic()
    server = None
    if not args.url:
        env = dict(os.environ)
        env.setdefault("ROUTEREPLAY_CACHE", tempfile.mkdtemp(prefix="routereplay-cache-"))
        server = ServeProcess(cli_command(args.routereplay) + ["serve", "--port", "0"] + shlex.split(args.serve_args), env=env, startup_timeout=300).start()
    try:
        client = Client(args.url or server.url)
        info = client.model_info()
        sequences = gather_rollouts(client, args.max_new_tokens)
    finally:
        if server is not None:
            server.stop()
    moe_layers = info["moe_layers"]
    topk, num_experts = info["num_experts_per_tok"], info["num_experts"]
    for rows in sequences:
        moe_rows = rows[:, moe_layers].reshape(-1, topk)
        if moe_rows.min() < 0 or moe_rows.max() >= num_experts or any(len(set(r)) != topk for r in moe_rows.tolist()):
            raise AssertionError("a served row holds an id out of range or a repeated id")
    replay = to_megatron_replay(sequences, moe_layers, as_torch=True)
    expected = expected_sets(sequences, moe_layers)

    result, megatron_error = None, None
    if not args.force_pytorch:
        try:
            result = megatron_check(replay, num_experts, topk, args.hidden, device)
        except Exception as e:  # Megatron-Core absent, or its router cannot be built here
            megatron_error = f"{type(e).__name__}: {e}"
    if result is None:
        result = pytorch_check(replay, num_experts, topk, args.hidden, device)

    mismatches = count_mismatches(result, expected)
    summary = {
        "model": info.get("model_path"), "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None, "torch": torch.__version__,
        "router": result["router"], "megatron_error": megatron_error, "moe_layers": moe_layers, "num_experts": num_experts,
        "topk": topk, "sequences": len(sequences), "tokens": int(replay[0].shape[0]), "mismatches": mismatches,
        "gradient_leaks": result.get("gradient_leaks"),
        "token_layers_whose_own_top_k_differs": result.get("overridden"), "seconds": round(time.monotonic() - started, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    failed = sum(mismatches.values()) + (summary["gradient_leaks"] or 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
