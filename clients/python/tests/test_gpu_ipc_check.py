"""The GPU IPC check's answers against the test server: greedy, so asking twice gives the same bytes to compare."""

import pytest
from conftest import load_example


@pytest.fixture(scope="module")
def check():
    return load_example("gpu_ipc_check")


def test_its_answers_carry_tokens_and_raw_routing_and_repeat_exactly(check, client):
    first = check.answers(client, 4)
    assert len(first) == len(check.PROMPTS)
    for answer, prompt in zip(first, check.PROMPTS):
        assert len(answer["output_ids"]) == 4 and isinstance(answer["routed_experts"], str) and answer["routed_experts"]
    assert check.answers(client, 4) == first
