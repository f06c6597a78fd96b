"""Routing rows from either of the server's JSON forms (see the README's Serving API)."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Optional

import numpy as np

from .layers import expand_to_all_layers

#: dtypes the OpenAI form's ``dtype`` may name (the server writes ``uint8`` up to 255 experts, else ``uint16``).
ROUTING_DTYPES = ("uint8", "uint16", "int16", "int32", "int64")

_OBJECT_FIELDS = ("start", "shape", "dtype", "moe_layers", "encoding", "data")


def decode_routed_experts(x: Any, num_layers: Optional[int] = None, topk: Optional[int] = None, *, dense_fill: int = 0) -> np.ndarray:
    """
    Routing rows as a NumPy array ``[rows, layers, K]`` from either wire form (or rows kept as a nested list).

    * The OpenAI form (``/v1/completions`` and ``/v1/chat/completions``, a choice's ``routed_experts``):
      ``{"start", "shape": [rows, L_moe, K], "dtype", "moe_layers", "encoding": "base64", "data"}``. The result keeps
      the wire dtype (``uint8`` or ``uint16``) and has one layer per MoE layer; with ``num_layers`` it has one per
      hidden layer instead, dense layers holding ``dense_fill``. ``topk``, when given, must equal ``K``.
    * SGLang's ``/generate`` form (``meta_info.routed_experts``): a base64 string of little-endian int32
      ``[rows, num_hidden_layers, K]``, a dense layer's ids 0. It carries no shape, so ``num_layers`` (``/get_model_info``'s
      ``num_hidden_layers``) and ``topk`` (its ``num_experts_per_tok``) are required. The result is int32.
    * A nested list ``[rows, layers, K]`` of ids (rows kept as JSON lists) or an array already decoded: checked against
      ``num_layers`` and ``topk`` where given; a list becomes int32, an array keeps its dtype.

    ``x`` may also be what holds one of them: a ``/generate`` answer (``meta_info.routed_experts``) or an OpenAI choice
    (``routed_experts``). Rows are positions ``start .. T-2`` of a request of ``T`` tokens; expert ids are the model's
    logical ids, ordered by descending router probability.
    """
    if isinstance(x, dict) and "meta_info" in x:
        meta = x["meta_info"]
        if not isinstance(meta, dict) or meta.get("routed_experts") is None:
            raise ValueError("this /generate answer has no meta_info.routed_experts (ask with return_routed_experts: true)")
        return decode_routed_experts(meta["routed_experts"], num_layers, topk, dense_fill=dense_fill)
    if isinstance(x, dict) and "routed_experts" in x and "encoding" not in x:
        if x["routed_experts"] is None:
            raise ValueError("this choice has no routed_experts (ask with return_routed_experts: true)")
        return decode_routed_experts(x["routed_experts"], num_layers, topk, dense_fill=dense_fill)
    if isinstance(x, dict):
        return _decode_object(x, num_layers, topk, dense_fill)
    if isinstance(x, (str, bytes, bytearray)):
        return _decode_sglang(x, num_layers, topk)
    if isinstance(x, (list, tuple, np.ndarray)):
        return _decode_nested(x, num_layers, topk)
    raise TypeError(
        f"routed_experts must be the OpenAI form's object, SGLang's base64 string or a nested list [rows, layers, K]; got {type(x).__name__}")


def routing_start(x: Any) -> int:
    """The first row's position: the OpenAI form's ``start``, or a ``/generate`` answer's ``meta_info.routed_experts_start_len``."""
    if isinstance(x, dict) and "meta_info" in x:
        return int(x["meta_info"].get("routed_experts_start_len", 0))
    if isinstance(x, dict) and "routed_experts" in x and "encoding" not in x:
        return routing_start(x["routed_experts"])
    if isinstance(x, dict):
        return int(x["start"])
    raise TypeError(f"cannot read a start from {type(x).__name__}")


def _decode_object(obj: dict, num_layers: Optional[int], topk: Optional[int], dense_fill: int) -> np.ndarray:
    missing = [field for field in _OBJECT_FIELDS if field not in obj]
    if missing:
        raise ValueError(f"routed_experts object lacks {', '.join(missing)}")
    if obj["encoding"] != "base64":
        raise ValueError(f"routed_experts.encoding must be 'base64'; got {obj['encoding']!r}")
    if obj["dtype"] not in ROUTING_DTYPES:
        raise ValueError(f"routed_experts.dtype must be one of {', '.join(ROUTING_DTYPES)}; got {obj['dtype']!r}")
    shape = obj["shape"]
    if not isinstance(shape, list) or len(shape) != 3 or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError(f"routed_experts.shape must be [rows, L_moe, K]; got {shape!r}")
    dtype = np.dtype(obj["dtype"]).newbyteorder("<")
    data = _b64decode(obj["data"], "routed_experts.data")
    expected = shape[0] * shape[1] * shape[2] * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"routed_experts.data holds {len(data)} bytes; shape {shape} of {obj['dtype']} needs {expected}")
    rows = np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    if topk is not None and shape[2] != topk:
        raise ValueError(f"routed_experts has K={shape[2]} experts per row, not topk={topk}")
    moe_layers = obj["moe_layers"]
    if len(moe_layers) != shape[1]:
        raise ValueError(f"routed_experts.moe_layers names {len(moe_layers)} layers; shape has {shape[1]}")
    if num_layers is None:
        return rows
    return expand_to_all_layers(rows, moe_layers, num_layers, dense_fill)


def _decode_sglang(text: Any, num_layers: Optional[int], topk: Optional[int]) -> np.ndarray:
    if num_layers is None or topk is None:
        raise ValueError(
            "decoding SGLang's routed_experts (a bare base64 string) needs num_layers and topk "
            "(/get_model_info's num_hidden_layers and num_experts_per_tok)")
    if num_layers <= 0 or topk <= 0:
        raise ValueError(f"num_layers and topk must be positive; got {num_layers} and {topk}")
    data = _b64decode(text, "meta_info.routed_experts")
    row_bytes = num_layers * topk * 4
    if len(data) % row_bytes != 0:
        raise ValueError(
            f"meta_info.routed_experts holds {len(data)} bytes, not a whole number of rows of "
            f"num_layers={num_layers} x topk={topk} int32 ({row_bytes} bytes)")
    return np.frombuffer(data, dtype="<i4").reshape(-1, num_layers, topk).astype(np.int32)


def _decode_nested(rows: Any, num_layers: Optional[int], topk: Optional[int]) -> np.ndarray:
    if not isinstance(rows, np.ndarray) and len(rows) == 0:
        if num_layers is None or topk is None:
            raise ValueError("an empty routed_experts list needs num_layers and topk to have a shape")
        return np.zeros((0, num_layers, topk), dtype=np.int32)
    try:
        array = np.asarray(rows) if isinstance(rows, np.ndarray) else np.asarray(rows, dtype=np.int64)
    except (ValueError, TypeError) as e:
        raise ValueError(f"routed_experts must be a nested list of integer ids [rows, layers, K]: {e}") from None
    if array.ndim != 3:
        raise ValueError(f"routed_experts must have shape [rows, layers, K]; got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"routed_experts must hold integer expert ids; got dtype {array.dtype}")
    if topk is not None and array.shape[2] != topk:
        raise ValueError(f"routed_experts has K={array.shape[2]} experts per row, not topk={topk}")
    if num_layers is not None and array.shape[1] != num_layers:
        raise ValueError(
            f"routed_experts has {array.shape[1]} layers, not num_layers={num_layers} "
            "(to spread MoE layers' rows over every layer, use expand_to_all_layers with moe_layers)")
    if isinstance(rows, np.ndarray):
        return array
    if array.size and (array.min() < np.iinfo(np.int32).min or array.max() > np.iinfo(np.int32).max):
        raise ValueError(f"routed_experts holds ids {array.min()}..{array.max()}, beyond int32")
    return array.astype(np.int32)


def _b64decode(text: Any, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as e:
        raise ValueError(f"{field} is not base64: {e}") from None
