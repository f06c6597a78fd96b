"""A small synchronous client for a RouteReplay server (``serve`` or ``router``), on the standard library's urllib."""

from __future__ import annotations

import ipaddress
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .errors import RouteReplayError
from .ipc import NamedTensors, ipc_weights_request, release_shared_tensors
from .wire import decode_routed_experts, routing_start

Answer = Union[Dict[str, Any], List[Dict[str, Any]]]


class Client:
    """
    ``Client("http://127.0.0.1:8000")``: SGLang's ``/generate``, the OpenAI routes and the control endpoints of one
    RouteReplay server. Answers are the server's JSON, parsed; where routing was asked, each ``/generate`` answer and each
    OpenAI choice also gets ``routing`` (a NumPy array ``[rows, layers, K]``, see :func:`decode_routed_experts`) and
    ``routing_start`` (the position of its first row). An error answer raises :class:`RouteReplayError`.
    """

    def __init__(self, url: str, api_key: Optional[str] = None, timeout: float = 600.0):
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"url must be http://HOST:PORT or https://HOST:PORT; got {url!r}")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self._model_info: Optional[Dict[str, Any]] = None
        # A proxy cannot reach this machine's loopback, so loopback servers are always asked directly.
        handlers = [urllib.request.ProxyHandler({})] if _is_loopback(parsed.hostname) else []
        self._opener = urllib.request.build_opener(*handlers)

    def get(self, path: str) -> Any:
        """``GET path``; the parsed JSON answer (the text when it is not JSON)."""
        return self._request("GET", path, None)

    def post(self, path: str, body: Dict[str, Any]) -> Any:
        """``POST path`` with a JSON body; the parsed JSON answer."""
        return self._request("POST", path, body)

    def model_info(self, refresh: bool = False) -> Dict[str, Any]:
        """``/get_model_info`` (``num_hidden_layers``, ``num_experts``, ``num_experts_per_tok``, ``moe_layers``, ...), read once."""
        if self._model_info is None or refresh:
            self._model_info = self.get("/get_model_info")
        return self._model_info

    def generate(
        self,
        text: Optional[str] = None,
        *,
        input_ids: Optional[Sequence[int]] = None,
        sampling_params: Optional[Dict[str, Any]] = None,
        return_routed_experts: bool = False,
        routed_experts_start_len: Optional[int] = None,
        rid: Optional[str] = None,
        return_logprob: bool = False,
        top_logprobs_num: Optional[int] = None,
        **fields: Any,
    ) -> Answer:
        """
        SGLang's ``POST /generate`` with ``text`` or ``input_ids``: ``{"text", "output_ids", "meta_info"}`` (a list of them
        when ``sampling_params["n"] > 1``). With ``return_routed_experts``, each answer's ``routing`` is int32
        ``[rows, num_hidden_layers, K]`` (dense layers 0), rows ``routing_start .. T-2``. Other request fields go in
        ``fields``.
        """
        if (text is None) == (input_ids is None):
            raise ValueError("give exactly one of text or input_ids")
        _refuse_stream(fields)
        body: Dict[str, Any] = dict(fields)
        if text is not None:
            body["text"] = text
        else:
            body["input_ids"] = [int(i) for i in input_ids]
        body["sampling_params"] = dict(sampling_params or {})
        if return_routed_experts:
            body["return_routed_experts"] = True
        if routed_experts_start_len is not None:
            body["routed_experts_start_len"] = int(routed_experts_start_len)
        if rid is not None:
            body["rid"] = rid
        if return_logprob:
            body["return_logprob"] = True
        if top_logprobs_num is not None:
            body["top_logprobs_num"] = int(top_logprobs_num)
        answer = self.post("/generate", body)
        if return_routed_experts:
            info = self.model_info()
            for item in answer if isinstance(answer, list) else [answer]:
                routed = item.get("meta_info", {}).get("routed_experts")
                item["routing"] = None if routed is None else decode_routed_experts(
                    routed, info["num_hidden_layers"], info["num_experts_per_tok"])
                item["routing_start"] = routing_start(item)
        return answer

    def completions(
        self,
        prompt: Union[str, Sequence[int]],
        *,
        return_routed_experts: bool = False,
        routed_experts_start: Optional[int] = None,
        return_token_ids: bool = False,
        **fields: Any,
    ) -> Dict[str, Any]:
        """
        OpenAI's ``POST /v1/completions`` (``prompt`` as text or token ids; ``max_tokens``, ``temperature``, ``seed``,
        ``n``, ... in ``fields``). With ``return_routed_experts``, each choice's ``routing`` is ``[rows, L_moe, K]`` in the
        wire dtype, one layer per MoE layer (the choice's ``routed_experts.moe_layers`` name them).
        """
        body = dict(fields)
        body["prompt"] = prompt if isinstance(prompt, str) else [int(i) for i in prompt]
        return self._openai("/v1/completions", body, return_routed_experts, routed_experts_start, return_token_ids)

    def chat_completions(
        self,
        messages: Sequence[Dict[str, Any]],
        *,
        return_routed_experts: bool = False,
        routed_experts_start: Optional[int] = None,
        return_token_ids: bool = False,
        **fields: Any,
    ) -> Dict[str, Any]:
        """OpenAI's ``POST /v1/chat/completions``; routing as for :meth:`completions`."""
        body = dict(fields)
        body["messages"] = list(messages)
        return self._openai("/v1/chat/completions", body, return_routed_experts, routed_experts_start, return_token_ids)

    def update_weights_from_ipc(self, named_tensors: NamedTensors, weight_version: Optional[str] = None, abort_all_requests: bool = False) -> Dict[str, Any]:
        """
        ``POST /update_weights_from_ipc``: the server (``serve --device cuda`` on this machine) copies these CUDA tensors
        into its weights, device to device, without disk (see :func:`ipc_weights_request`). The tensors may be part of
        the model; requests in flight finish on the old weights (or are aborted first with ``abort_all_requests``).
        Keep the tensors alive until this returns. Once the engine has answered, their storages are released to
        PyTorch (:func:`release_shared_tensors`), so tensors made only to be sent are freed when dropped. (When no answer
        comes, a timeout or a lost connection, they stay held: the engine may still be reading them.)
        """
        counters: List[Tuple[bytes, int]] = []
        body = ipc_weights_request(named_tensors, weight_version, abort_all_requests, counters)
        _synchronize_cuda()
        try:
            reply = self.post("/update_weights_from_ipc", body)
        except RouteReplayError:
            release_shared_tensors(counters)
            raise
        release_shared_tensors(counters)
        return reply

    def _openai(self, path: str, body: Dict[str, Any], return_routed_experts: bool, routed_experts_start: Optional[int], return_token_ids: bool) -> Dict[str, Any]:
        _refuse_stream(body)
        if return_routed_experts:
            body["return_routed_experts"] = True
        if routed_experts_start is not None:
            body["routed_experts_start"] = int(routed_experts_start)
        if return_token_ids:
            body["return_token_ids"] = True
        answer = self.post(path, body)
        if return_routed_experts:
            for choice in answer.get("choices", []):
                routed = choice.get("routed_experts")
                choice["routing"] = None if routed is None else decode_routed_experts(routed)
                choice["routing_start"] = None if routed is None else routing_start(routed)
        return answer

    def _request(self, method: str, path: str, body: Optional[Dict[str, Any]]) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return _parse(response.read())
        except urllib.error.HTTPError as e:
            raise _error(e.code, e.read()) from None
        except urllib.error.URLError as e:
            raise ConnectionError(f"cannot reach {self.url}{path}: {e.reason}") from None


def _parse(raw: bytes) -> Any:
    text = raw.decode("utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _error(status: int, raw: bytes) -> RouteReplayError:
    body = _parse(raw)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return RouteReplayError(status, str(error.get("message", "")), error.get("type"), error.get("param"), error.get("code"))
    return RouteReplayError(status, body if isinstance(body, str) else json.dumps(body))


def _synchronize_cuda() -> None:
    """Waits for this process's CUDA work, so the engine reads the tensors as written (PyTorch stays optional)."""
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _refuse_stream(fields: Dict[str, Any]) -> None:
    if fields.get("stream"):
        raise ValueError("this client does not stream; leave stream out (the whole answer comes at once)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
