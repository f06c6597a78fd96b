"""Megatron-Core's replay data: one int64 [tokens, K] array per MoE layer, a placeholder row per sequence's last token."""

import sys
import types

import numpy as np
import pytest

from routereplay_client import to_megatron_replay

PROMPT = [9707, 1052, 11]


def _rows(count, layers=4, topk=2, experts=8):
    ids = np.array([(t * 3 + l * 5 + np.arange(topk)) % experts for t in range(count) for l in range(layers)])
    return ids.reshape(count, layers, topk).astype(np.int32)


def test_every_moe_layer_gets_its_rows_and_a_repeated_last_row():
    rows = _rows(6)
    replay = to_megatron_replay(rows, [1, 2, 3])
    assert len(replay) == 3
    for index, layer in enumerate([1, 2, 3]):
        assert replay[index].dtype == np.int64
        assert replay[index].shape == (7, 2)
        assert replay[index].flags.c_contiguous
        assert np.array_equal(replay[index][:6], rows[:, layer])
        assert np.array_equal(replay[index][6], rows[5, layer])


def test_distinct_fill_follows_slimes_padding():
    rows = _rows(2, layers=3)
    replay = to_megatron_replay(rows, None, fill="distinct", num_experts=8, num_tokens=5)
    tokens = np.stack(replay, axis=1)
    assert tokens.shape == (5, 3, 2)
    # slime: torch.arange(pad * num_layers * topk).reshape(pad, num_layers, topk) % num_experts, once per sequence, then for the padding
    assert np.array_equal(tokens[2], np.arange(6).reshape(3, 2) % 8)
    assert np.array_equal(tokens[3:], np.arange(2 * 6).reshape(2, 3, 2) % 8)
    with pytest.raises(ValueError, match="needs num_experts"):
        to_megatron_replay(rows, None, fill="distinct")


def test_a_packed_micro_batch_concatenates_sequences_each_with_its_placeholder():
    first, second = _rows(3), _rows(2) + 1
    replay = to_megatron_replay([first, second], [1, 3], fill="zeros", num_tokens=8)
    tokens = np.stack(replay, axis=1)
    assert tokens.shape == (8, 2, 2)
    assert np.array_equal(tokens[0:3], first[:, [1, 3]])
    assert not tokens[3].any()
    assert np.array_equal(tokens[4:6], second[:, [1, 3]])
    assert not tokens[6:].any()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="fewer than the 4 tokens"):
        to_megatron_replay(_rows(3), None, num_tokens=3)
    with pytest.raises(ValueError, match=r"must lie in \[0, 4\)"):
        to_megatron_replay(_rows(3), [1, 4])
    with pytest.raises(ValueError, match="has none"):
        to_megatron_replay(_rows(0), None)
    with pytest.raises(ValueError, match="fill must be one of"):
        to_megatron_replay(_rows(1), None, fill="ones")
    with pytest.raises(ValueError, match="holds no sequence"):
        to_megatron_replay([], None)


def test_both_wire_forms_give_the_same_replay_data(client, info):
    generated = client.generate(input_ids=PROMPT, sampling_params={"max_new_tokens": 5, "temperature": 0}, return_routed_experts=True)
    choice = client.completions(PROMPT, max_tokens=5, temperature=0, return_routed_experts=True)["choices"][0]
    from_generate = to_megatron_replay(generated["routing"], info["moe_layers"])
    from_openai = to_megatron_replay(choice["routing"])
    tokens = len(PROMPT) + len(generated["output_ids"])
    assert [r.shape for r in from_generate] == [(tokens, info["num_experts_per_tok"])] * len(info["moe_layers"])
    for a, b in zip(from_generate, from_openai):
        assert np.array_equal(a, b)


def test_as_torch_wraps_each_array_with_torch_from_numpy(monkeypatch):
    wrapped = []
    fake_torch = types.ModuleType("torch")
    fake_torch.from_numpy = lambda array: wrapped.append(array) or ("tensor", array)
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    replay = to_megatron_replay(_rows(2), [1, 2], as_torch=True)
    assert [kind for kind, _ in replay] == ["tensor", "tensor"]
    assert all(array.dtype == np.int64 for array in wrapped)
