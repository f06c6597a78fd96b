"""The GPU replay check's parts that need no PyTorch: its rollouts against the test server and its verdict."""

import pytest
from conftest import load_example

from routereplay_client import to_megatron_replay


@pytest.fixture(scope="module")
def check():
    return load_example("gpu_replay_check")


def test_its_expected_experts_read_from_the_rows_agree_with_to_megatron_replay(check, client, info):
    sequences = check.gather_rollouts(client, 4)
    assert len(sequences) == 2 * len(check.PROMPTS) + 1
    expected = check.expected_sets(sequences, info["moe_layers"])
    replay = to_megatron_replay(sequences, info["moe_layers"])
    assert len(expected) == len(replay) == len(info["moe_layers"])
    assert len(expected[0]) == sum(len(rows) + 1 for rows in sequences)
    for want, indices in zip(expected, replay):
        assert [frozenset(row.tolist()) for row in indices] == want


def test_its_verdict_counts_every_token_sent_elsewhere_or_missing(check):
    expected = [[frozenset({1, 2}), frozenset({3, 4})], [frozenset({0, 5}), frozenset({6, 7})]]
    assert check.count_mismatches({"selected": expected, "computed": expected}, expected) == {"selected": 0, "computed": 0}
    wrong = {"selected": [[frozenset({1, 2}), frozenset({3, 5})], expected[1]], "computed": [expected[0], expected[1][:1]]}
    assert check.count_mismatches(wrong, expected) == {"selected": 1, "computed": 1}
    with pytest.raises(AssertionError, match="1 MoE layers, not 2"):
        check.count_mismatches({"selected": expected[:1]}, expected)
