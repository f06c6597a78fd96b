"""Decoding both wire forms, from real answers of the server and from payloads built as RoutingWire.cs writes them."""

import base64
import struct

import numpy as np
import pytest

from routereplay_client import decode_routed_experts, routing_start

PROMPT = [9707, 1052, 11, 358]
GREEDY = {"max_new_tokens": 6, "temperature": 0, "ignore_eos": True}


def test_openai_form_decodes_to_rows_of_the_moe_layers_in_the_wire_dtype(client, info):
    answer = client.completions(PROMPT, max_tokens=6, temperature=0, ignore_eos=True, return_routed_experts=True, return_token_ids=True)
    choice = answer["choices"][0]
    tokens = answer["prompt_token_ids"] + choice["token_ids"]
    rows = choice["routing"]
    assert choice["routed_experts"]["moe_layers"] == info["moe_layers"] == [1, 2, 3]
    assert rows.shape == (len(tokens) - 1, len(info["moe_layers"]), info["num_experts_per_tok"])
    assert rows.dtype == np.uint8 and info["routing_dtype"] == "uint8"
    assert choice["routing_start"] == 0
    assert rows.max() < info["num_experts"]
    assert all(len(set(row)) == info["num_experts_per_tok"] for row in rows.reshape(-1, rows.shape[2]).tolist())
    assert np.array_equal(decode_routed_experts(choice["routed_experts"]), rows)
    assert np.array_equal(decode_routed_experts(choice), rows)


def test_generate_form_has_every_layer_with_dense_layers_zero_and_equals_the_openai_rows(client, info):
    generated = client.generate(input_ids=PROMPT, sampling_params=GREEDY, return_routed_experts=True)
    choice = client.completions(PROMPT, max_tokens=6, temperature=0, ignore_eos=True, return_routed_experts=True, return_token_ids=True)["choices"][0]
    assert generated["output_ids"] == choice["token_ids"]
    rows = generated["routing"]
    moe_rows = choice["routing"]
    assert rows.dtype == np.int32
    assert rows.shape == (len(PROMPT) + len(generated["output_ids"]) - 1, info["num_hidden_layers"], info["num_experts_per_tok"])
    dense = [layer for layer in range(info["num_hidden_layers"]) if layer not in info["moe_layers"]]
    assert dense == [0]
    assert not rows[:, dense].any()
    assert np.array_equal(rows[:, info["moe_layers"]], moe_rows)
    spread = decode_routed_experts(choice["routed_experts"], num_layers=info["num_hidden_layers"])
    assert np.array_equal(spread, rows)


def test_generate_form_decodes_from_the_answer_its_meta_info_or_the_bare_string(client, info):
    answer = client.generate(input_ids=PROMPT, sampling_params=GREEDY, return_routed_experts=True)
    layers, topk = info["num_hidden_layers"], info["num_experts_per_tok"]
    by_answer = decode_routed_experts(answer, layers, topk)
    by_string = decode_routed_experts(answer["meta_info"]["routed_experts"], layers, topk)
    by_hand = np.frombuffer(base64.b64decode(answer["meta_info"]["routed_experts"]), dtype="<i4").reshape(-1, layers, topk)
    assert np.array_equal(by_answer, answer["routing"])
    assert np.array_equal(by_string, by_hand)
    assert routing_start(answer) == 0


def test_generate_form_needs_num_layers_and_topk(client):
    answer = client.generate(input_ids=PROMPT, sampling_params=GREEDY, return_routed_experts=True)
    with pytest.raises(ValueError, match="num_layers and topk"):
        decode_routed_experts(answer["meta_info"]["routed_experts"])


def test_generate_form_with_the_wrong_layer_count_is_refused(client, info):
    answer = client.generate(input_ids=PROMPT, sampling_params={"max_new_tokens": 2, "temperature": 0, "ignore_eos": True}, return_routed_experts=True)
    rows = len(PROMPT) + 2 - 1
    assert rows * info["num_hidden_layers"] % 3 != 0
    with pytest.raises(ValueError, match="not a whole number of rows"):
        decode_routed_experts(answer["meta_info"]["routed_experts"], num_layers=3, topk=info["num_experts_per_tok"])


def test_a_start_returns_only_the_later_rows_and_echoes_it(client, info):
    full = client.generate(input_ids=PROMPT, sampling_params=GREEDY, return_routed_experts=True)
    tail = client.generate(input_ids=PROMPT, sampling_params=GREEDY, return_routed_experts=True, routed_experts_start_len=3)
    assert tail["routing_start"] == 3 == tail["meta_info"]["routed_experts_start_len"]
    assert np.array_equal(tail["routing"], full["routing"][3:])
    choice = client.completions(PROMPT, max_tokens=6, temperature=0, ignore_eos=True, return_routed_experts=True, routed_experts_start=2)["choices"][0]
    assert choice["routing_start"] == 2 == choice["routed_experts"]["start"]
    assert np.array_equal(choice["routing"], full["routing"][2:, info["moe_layers"]])


def _object(rows, dtype, moe_layers, start=0):
    """The OpenAI form as RoutingWire.Write writes it: C order, little-endian."""
    rows = np.asarray(rows)
    data = b"".join(struct.pack("<H" if dtype == "uint16" else "<B", int(v)) for v in rows.reshape(-1))
    return {"start": start, "shape": list(rows.shape), "dtype": dtype, "moe_layers": moe_layers, "encoding": "base64",
            "data": base64.b64encode(data).decode("ascii")}


def test_uint16_rows_decode_little_endian_in_c_order():
    rows = np.array([[[300, 7], [1, 511]], [[256, 0], [65535, 2]]])
    decoded = decode_routed_experts(_object(rows, "uint16", [0, 2]))
    assert decoded.dtype == np.uint16
    assert decoded.dtype.byteorder in ("=", "|", "<")
    assert np.array_equal(decoded, rows)


def test_spreading_uses_moe_layers_and_the_dense_fill():
    rows = np.array([[[5, 6], [7, 1]]])
    spread = decode_routed_experts(_object(rows, "uint8", [1, 3]), num_layers=4, dense_fill=255)
    assert spread.tolist() == [[[255, 255], [5, 6], [255, 255], [7, 1]]]


def test_malformed_objects_are_refused_naming_the_field():
    good = _object([[[1, 2]]], "uint8", [0])
    with pytest.raises(ValueError, match="routed_experts.encoding"):
        decode_routed_experts({**good, "encoding": "hex"})
    with pytest.raises(ValueError, match="routed_experts.dtype"):
        decode_routed_experts({**good, "dtype": "float32"})
    with pytest.raises(ValueError, match="routed_experts.data holds 2 bytes"):
        decode_routed_experts({**good, "shape": [2, 1, 2]})
    with pytest.raises(ValueError, match="routed_experts.data is not base64"):
        decode_routed_experts({**good, "data": "not*base64"})
    with pytest.raises(ValueError, match="lacks moe_layers"):
        decode_routed_experts({k: v for k, v in good.items() if k != "moe_layers"})
    with pytest.raises(ValueError, match="not topk=3"):
        decode_routed_experts(good, topk=3)
    with pytest.raises(TypeError):
        decode_routed_experts(12)


def test_an_answer_without_routing_says_how_to_ask_for_it(client):
    answer = client.generate(input_ids=PROMPT, sampling_params={"max_new_tokens": 1})
    with pytest.raises(ValueError, match="return_routed_experts"):
        decode_routed_experts(answer, 4, 2)


def test_rows_kept_as_a_nested_list_decode_to_the_same_rows(client, info):
    answer = client.generate(input_ids=PROMPT, sampling_params=GREEDY, return_routed_experts=True)
    layers, topk = info["num_hidden_layers"], info["num_experts_per_tok"]
    as_lists = answer["routing"].tolist()
    decoded = decode_routed_experts(as_lists, layers, topk)
    assert decoded.dtype == np.int32
    assert np.array_equal(decoded, answer["routing"])
    assert np.array_equal(decode_routed_experts({"routed_experts": as_lists}), answer["routing"])
    assert decode_routed_experts(answer["routing"]) is answer["routing"]
    assert decode_routed_experts([], layers, topk).shape == (0, layers, topk)


def test_malformed_nested_lists_are_refused():
    with pytest.raises(ValueError, match=r"shape \[rows, layers, K\]; got shape \(2, 2\)"):
        decode_routed_experts([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="nested list of integer ids"):
        decode_routed_experts([[[1, 2]], [[3]]])
    with pytest.raises(ValueError, match="nested list of integer ids"):
        decode_routed_experts([[["a", "b"]]])
    with pytest.raises(ValueError, match="integer expert ids"):
        decode_routed_experts(np.zeros((1, 1, 2)))
    with pytest.raises(ValueError, match="not topk=3"):
        decode_routed_experts([[[1, 2]]], topk=3)
    with pytest.raises(ValueError, match="not num_layers=4"):
        decode_routed_experts([[[1, 2]]], num_layers=4)
    with pytest.raises(ValueError, match="needs num_layers and topk"):
        decode_routed_experts([])
    with pytest.raises(ValueError, match="beyond int32"):
        decode_routed_experts([[[1, 2**40]]])
