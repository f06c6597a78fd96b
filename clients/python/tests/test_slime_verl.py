"""slime's rollout_routed_experts and verl's routed_experts, against transcriptions of the frameworks' own code."""

import base64

import numpy as np
import pytest

from routereplay_client import to_slime, to_verl

PROMPT = [9707, 1052, 11, 358]


def _slime_decode(meta_info, num_tokens, num_layers, topk):
    """slime/rollout/sglang_rollout.py: np.frombuffer(b64decode(...), np.int32).reshape(len(sample.tokens) - 1, args.num_layers, args.moe_router_topk)."""
    return np.frombuffer(base64.b64decode(meta_info["routed_experts"].encode("ascii")), dtype=np.int32).reshape(num_tokens - 1, num_layers, topk)


def _verl_pad(rows, prompt_ids, prompt_width, response_width):
    """verl/experimental/agent_loop/agent_loop.py (_postprocess): zeros(1, total_length, layer_num, topk_num), rows from the left padding on."""
    total_length = prompt_width + response_width
    length, layer_num, topk_num = rows.shape
    routed_experts = np.zeros((1, total_length, layer_num, topk_num), dtype=rows.dtype)
    start_pos = prompt_width - len(prompt_ids)
    end_pos = min(start_pos + length, total_length)
    routed_experts[:, start_pos:end_pos] = rows[np.newaxis]
    return routed_experts


def test_to_slime_equals_slimes_own_decoding_from_either_form(client, info):
    out = client.generate(input_ids=PROMPT, sampling_params={"max_new_tokens": 6, "temperature": 0}, return_routed_experts=True)
    tokens = PROMPT + out["output_ids"]
    expected = _slime_decode(out["meta_info"], len(tokens), info["num_hidden_layers"], info["num_experts_per_tok"])
    from_generate = to_slime(out["routing"], num_tokens=len(tokens))
    assert from_generate.dtype == np.int32 and from_generate.flags.c_contiguous
    assert np.array_equal(from_generate, expected)
    choice = client.completions(PROMPT, max_tokens=6, temperature=0, return_routed_experts=True)["choices"][0]
    from_openai = to_slime(choice["routing"], num_layers=info["num_hidden_layers"], moe_layers=info["moe_layers"], num_tokens=len(tokens))
    assert np.array_equal(from_openai, expected)


def test_to_slime_checks_the_row_count_and_needs_moe_layers_to_spread():
    rows = np.ones((4, 3, 2), dtype=np.uint8)
    with pytest.raises(ValueError, match="len\\(tokens\\) - 1 = 5 rows; got 4"):
        to_slime(rows, num_tokens=6)
    with pytest.raises(ValueError, match="give moe_layers"):
        to_slime(rows, num_layers=4)
    spread = to_slime(rows, num_layers=4, moe_layers=[1, 2, 3], dense_fill=0)
    assert spread.shape == (4, 4, 2) and not spread[:, 0].any() and (spread[:, 1:] == 1).all()


def test_to_verl_equals_verls_padding(client, info):
    out = client.generate(input_ids=PROMPT, sampling_params={"max_new_tokens": 6, "temperature": 0}, return_routed_experts=True)
    rows = out["routing"]
    padded = to_verl(rows, prompt_len=len(PROMPT), prompt_width=10, response_width=12)
    assert padded.dtype == np.int16
    assert padded.shape == (1, 22, info["num_hidden_layers"], info["num_experts_per_tok"])
    assert np.array_equal(padded, _verl_pad(rows, PROMPT, 10, 12))
    last_token = 10 - len(PROMPT) + len(rows)
    assert not padded[0, last_token].any()


def test_to_verl_without_widths_is_one_sequence_with_its_placeholder_row():
    rows = np.arange(3 * 2 * 2).reshape(3, 2, 2).astype(np.int32) + 1
    padded = to_verl(rows, fill=0)
    assert padded.shape == (1, 4, 2, 2)
    assert np.array_equal(padded[0, :3], rows)
    assert not padded[0, 3].any()
    spread = to_verl(rows, num_layers=3, moe_layers=[0, 2], dtype=np.int32)
    assert spread.dtype == np.int32 and not spread[0, :, 1].any()


def test_to_verl_refuses_what_does_not_fit():
    rows = np.ones((5, 2, 2), dtype=np.int32)
    assert to_verl(rows, prompt_len=3, prompt_width=4, response_width=3).shape == (1, 7, 2, 2)
    with pytest.raises(ValueError, match="do not fit total_len=6"):
        to_verl(rows, prompt_len=3, prompt_width=4, response_width=2)
    with pytest.raises(ValueError, match="longer than prompt_width"):
        to_verl(rows, prompt_len=5, prompt_width=4, response_width=8)
    with pytest.raises(ValueError, match="together"):
        to_verl(rows, prompt_width=4, response_width=8)
    with pytest.raises(ValueError, match="do not fit int16"):
        to_verl(rows * 40000)
