"""Rows for tokens that have no routing: a sequence's last token (never fed through the model) and padding."""

from __future__ import annotations

from typing import Optional

import numpy as np

#: ``repeat``: a copy of the row before (real, distinct ids); ``distinct``: slime's ``arange(n * L * K) % num_experts``;
#: ``zeros``: every id 0 (verl's zero-initialised tensor, SGLang's and vLLM's capture buffers).
FILLS = ("repeat", "distinct", "zeros")


def placeholder_rows(count: int, before: Optional[np.ndarray], layers: int, topk: int, dtype: np.dtype, fill: str, num_experts: Optional[int] = None) -> np.ndarray:
    """``count`` rows of ``[layers, topk]`` for tokens without routing, made as ``fill`` says (see :data:`FILLS`)."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}; got {fill!r}")
    if fill == "zeros":
        return np.zeros((count, layers, topk), dtype=dtype)
    if fill == "distinct":
        if num_experts is None or num_experts < topk:
            raise ValueError(f"fill='distinct' needs num_experts (at least topk={topk}); got {num_experts}")
        return (np.arange(count * layers * topk, dtype=np.int64) % num_experts).reshape(count, layers, topk).astype(dtype)
    if before is None:
        raise ValueError("fill='repeat' needs a row to repeat, and this sequence has none (one token); use fill='distinct' or 'zeros'")
    return np.repeat(before[np.newaxis], count, axis=0).astype(dtype)
