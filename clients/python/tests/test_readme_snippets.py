"""Every Python block of the README's client and framework sections runs against the test server.

The blocks name the server ``http://127.0.0.1:8000`` (serve's default); the test runs them against its own. Megatron-Core
and PyTorch are not installed here: the Megatron block runs against stand-ins that keep ``RouterReplay``'s contract
(one instance per MoE layer, ``set_replay_data`` refusing a list of another length).
"""

import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[3] / "README.md"

SECTIONS = (
    "The Python client (`clients/python`)",
    "Using RouteReplay with slime",
    "Using RouteReplay with verl",
    "Using RouteReplay with Megatron",
)


def _blocks(title):
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end >= 0 else len(text)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def _run(code, url):
    assert "http://127.0.0.1:8000" in code
    namespace = {"__name__": "readme_snippet"}
    exec(compile(code.replace("http://127.0.0.1:8000", url), "README.md", "exec"), namespace)
    return namespace


class _RouterReplay:
    """Megatron-Core's RouterReplay as megatron/core/transformer/moe/router_replay.py defines what callers see."""

    global_router_replay_instances = []

    def __init__(self):
        self.target_topk_idx = None
        self.router_replay_action = None
        _RouterReplay.global_router_replay_instances.append(self)

    @staticmethod
    def set_replay_data(all_layers_topk_indices):
        if len(all_layers_topk_indices) != len(_RouterReplay.global_router_replay_instances):
            raise ValueError("The number of replay tensors does not match instances.")
        for index, router in enumerate(_RouterReplay.global_router_replay_instances):
            router.target_topk_idx = all_layers_topk_indices[index]

    @staticmethod
    def set_global_router_replay_action(action):
        for router in _RouterReplay.global_router_replay_instances:
            router.router_replay_action = action


@pytest.fixture
def megatron_stand_ins(monkeypatch, info):
    torch = types.ModuleType("torch")
    torch.from_numpy = lambda array: array
    torch.tensor = np.array
    replay_module = types.ModuleType("megatron.core.transformer.moe.router_replay")
    replay_module.RouterReplay = _RouterReplay
    replay_module.RouterReplayAction = types.SimpleNamespace(REPLAY_FORWARD="replay_forward")
    for name in ("megatron", "megatron.core", "megatron.core.transformer", "megatron.core.transformer.moe"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "megatron.core.transformer.moe.router_replay", replay_module)
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setattr(_RouterReplay, "global_router_replay_instances", [])
    return [_RouterReplay() for _ in info["moe_layers"]]


@pytest.mark.parametrize("title", SECTIONS[:3])
def test_the_sections_blocks_run(title, url):
    blocks = _blocks(title)
    assert blocks, f"no python block under '## {title}'"
    for block in blocks:
        _run(block, url)


def test_the_megatron_block_gives_every_router_its_rows(url, info, megatron_stand_ins):
    blocks = _blocks("Using RouteReplay with Megatron")
    assert len(blocks) == 1
    namespace = _run(blocks[0], url)
    tokens = namespace["tokens"]
    rows = namespace["out"]["routing"]
    for index, router in enumerate(megatron_stand_ins):
        assert router.router_replay_action == "replay_forward"
        assert router.target_topk_idx.dtype == np.int64
        assert router.target_topk_idx.shape == (len(tokens), info["num_experts_per_tok"])
        assert np.array_equal(router.target_topk_idx[:-1], rows[:, info["moe_layers"][index]])
