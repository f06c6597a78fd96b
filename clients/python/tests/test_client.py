"""The client against the real server: answers, n > 1, chat, errors."""

import socket

import numpy as np
import pytest

from routereplay_client import Client, RouteReplayError


def test_generate_with_n_returns_one_answer_per_choice_each_with_routing(client, info):
    answers = client.generate(text="The capital of France is", sampling_params={"max_new_tokens": 4, "n": 3, "seed": 7}, return_routed_experts=True)
    assert isinstance(answers, list) and len(answers) == 3
    prompt_tokens = answers[0]["meta_info"]["prompt_tokens"]
    for answer in answers:
        assert answer["routing"].shape == (prompt_tokens + len(answer["output_ids"]) - 1, info["num_hidden_layers"], info["num_experts_per_tok"])
        assert np.array_equal(answer["routing"][:prompt_tokens - 1], answers[0]["routing"][:prompt_tokens - 1])


def test_chat_completions_carry_routing_per_choice(client, info):
    answer = client.chat_completions([{"role": "user", "content": "Hello"}], max_tokens=3, n=2, return_routed_experts=True, return_token_ids=True)
    assert len(answer["choices"]) == 2
    for choice in answer["choices"]:
        assert choice["routing"].shape == (len(answer["prompt_token_ids"]) + len(choice["token_ids"]) - 1, len(info["moe_layers"]), info["num_experts_per_tok"])


def test_without_routing_asked_the_answer_is_left_as_the_server_wrote_it(client):
    answer = client.generate(input_ids=[9707, 1052], sampling_params={"max_new_tokens": 2})
    assert "routing" not in answer and "routed_experts" not in answer["meta_info"]


def test_an_error_answer_raises_with_status_and_the_field_as_written(client):
    with pytest.raises(RouteReplayError) as error:
        client.generate(input_ids=[9707], sampling_params={"max_new_tokens": 2, "temperature": -1})
    assert error.value.status == 400
    assert error.value.param == "sampling_params.temperature"
    with pytest.raises(RouteReplayError) as error:
        client.completions("Hello", max_tokens=2, routed_experts_start=-3, return_routed_experts=True)
    assert error.value.status == 400 and error.value.param == "routed_experts_start"


def test_the_server_keeps_serving_after_an_error(client):
    with pytest.raises(RouteReplayError):
        client.post("/generate", {"text": "a", "input_ids": [1]})
    assert client.get("/health") == "OK\n"


def test_arguments_the_client_cannot_send_are_refused_before_any_request(client):
    with pytest.raises(ValueError, match="exactly one of text or input_ids"):
        client.generate("Hello", input_ids=[1])
    with pytest.raises(ValueError, match="does not stream"):
        client.completions("Hello", stream=True)
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        Client("127.0.0.1:8000")


def test_an_unreachable_server_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        Client(f"http://127.0.0.1:{port}", timeout=10).get("/health")
