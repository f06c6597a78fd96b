"""The GPU IPC check's answers against the test server: greedy, so asking twice gives the same bytes to compare."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "gpu_ipc_check.py"


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("gpu_ipc_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_its_answers_carry_tokens_and_raw_routing_and_repeat_exactly(check, client):
    first = check.answers(client, 4)
    assert len(first) == len(check.PROMPTS)
    for answer, prompt in zip(first, check.PROMPTS):
        assert len(answer["output_ids"]) == 4 and isinstance(answer["routed_experts"], str) and answer["routed_experts"]
    assert check.answers(client, 4) == first
