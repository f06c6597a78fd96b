"""A multi-turn rollout's rows gathered turn by turn equal the rows of its whole sequence asked at once."""

import numpy as np
import pytest

from routereplay_client import RoutingAccumulator, accumulate

TURNS = ([9707, 1052, 11], [198, 785, 6722], [30, 1052])
SAMPLING = {"max_new_tokens": 5, "temperature": 0, "ignore_eos": True}


def test_generate_turns_with_a_start_return_only_new_rows_that_continue_the_held_ones(client):
    acc = RoutingAccumulator()
    tokens = []
    for user_turn in TURNS:
        tokens = tokens + user_turn
        out = client.generate(input_ids=tokens, sampling_params=SAMPLING, return_routed_experts=True, routed_experts_start_len=acc.next_start)
        assert out["routing_start"] == acc.next_start
        assert len(out["routing"]) == len(tokens) + len(out["output_ids"]) - 1 - acc.next_start
        acc.add(out["routing"], out["routing_start"])
        tokens = tokens + out["output_ids"]
    whole = client.generate(input_ids=tokens[:-1], sampling_params={"max_new_tokens": 1, "temperature": 0, "ignore_eos": True}, return_routed_experts=True)
    assert acc.rows.shape[0] == len(tokens) - 1
    assert np.array_equal(acc.rows, whole["routing"])


def test_openai_turns_with_a_start_gather_the_moe_rows(client, info):
    acc = RoutingAccumulator()
    tokens = []
    for user_turn in TURNS[:2]:
        tokens = tokens + user_turn
        choice = client.completions(tokens, max_tokens=5, temperature=0, ignore_eos=True, return_routed_experts=True,
                                    return_token_ids=True, routed_experts_start=acc.next_start)["choices"][0]
        acc.add(choice["routing"], choice["routing_start"])
        tokens = tokens + choice["token_ids"]
    whole = client.generate(input_ids=tokens[:-1], sampling_params={"max_new_tokens": 1, "temperature": 0, "ignore_eos": True}, return_routed_experts=True)
    assert acc.rows.dtype == np.uint8
    assert np.array_equal(acc.rows, whole["routing"][:, info["moe_layers"]])


def _rows(count, first=0):
    return np.arange(first * 4, (first + count) * 4, dtype=np.int32).reshape(count, 2, 2)


def test_overlapping_rows_are_replaced_by_the_newer_ones():
    held = _rows(5)
    newer = _rows(4, first=10)
    merged = accumulate(held, newer, 3)
    assert merged.shape == (7, 2, 2)
    assert np.array_equal(merged[:3], held[:3])
    assert np.array_equal(merged[3:], newer)


def test_a_gap_the_wrong_first_start_and_other_shapes_are_refused():
    with pytest.raises(ValueError, match="positions 5..6 would be missing"):
        accumulate(_rows(5), _rows(2), 7)
    with pytest.raises(ValueError, match="must start at 0"):
        accumulate(None, _rows(2), 1)
    with pytest.raises(ValueError, match="do not continue"):
        accumulate(_rows(2), np.zeros((1, 3, 2), dtype=np.int32), 2)
    with pytest.raises(ValueError, match=r"shape \[rows, layers, K\]"):
        accumulate(None, np.zeros((3, 2), dtype=np.int32), 0)


def test_the_accumulator_starts_empty_and_tracks_the_next_start():
    acc = RoutingAccumulator()
    assert acc.rows is None and acc.next_start == 0
    acc.add(_rows(3), 0)
    acc.add(_rows(2, first=3), 3)
    assert acc.next_start == 5
    assert np.array_equal(acc.rows, _rows(5))
