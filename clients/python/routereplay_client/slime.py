"""slime's ``Sample.rollout_routed_experts``: int32 ``[T-1, num_layers, topk]`` over every layer, a dense layer's ids 0."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .layers import check_rows, to_all_layers


def to_slime(
    rows: np.ndarray,
    *,
    num_layers: Optional[int] = None,
    moe_layers: Optional[Sequence[int]] = None,
    num_tokens: Optional[int] = None,
    dense_fill: int = 0,
) -> np.ndarray:
    """
    Rows as slime keeps them in ``sample.rollout_routed_experts``: int32 ``[T-1, num_layers, topk]``, the layer axis
    counting every layer (slime's ``args.num_layers``), a dense layer's ids ``dense_fill`` (0, as SGLang returns them;
    slime skips dense layers when it fills its routers). Rows from ``/generate`` already have that layout; rows of the MoE
    layers only (the OpenAI form) need ``num_layers`` and ``moe_layers`` to be spread. ``num_tokens`` (``len(sample.tokens)``),
    when given, is checked: slime requires ``T-1`` rows for ``T`` tokens.
    """
    rows = to_all_layers(check_rows(rows), num_layers, moe_layers, dense_fill)
    if num_tokens is not None and len(rows) != num_tokens - 1:
        raise ValueError(f"slime needs len(tokens) - 1 = {num_tokens - 1} rows; got {len(rows)}")
    return np.ascontiguousarray(rows, dtype=np.int32)
