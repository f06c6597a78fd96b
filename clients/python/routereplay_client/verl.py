"""verl's batch field ``routed_experts``: ``[1, total_len, L, K]``, the rollout's rows placed after the prompt's left padding."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .layers import check_rows, to_all_layers


def to_verl(
    rows: np.ndarray,
    *,
    prompt_len: Optional[int] = None,
    prompt_width: Optional[int] = None,
    response_width: Optional[int] = None,
    num_layers: Optional[int] = None,
    moe_layers: Optional[Sequence[int]] = None,
    dtype: np.dtype = np.int16,
    fill: int = 0,
) -> np.ndarray:
    """
    One sample's rows in verl's layout: ``[1, total_len, L, K]`` of ``dtype`` (int16 by default), where
    ``total_len = prompt_width + response_width`` (verl's ``rollout.prompt_length`` and ``rollout.response_length``: the
    prompt is left-padded to the first, the response right-padded to the second). The ``T-1`` rows go to positions
    ``prompt_width - prompt_len ..``; every other position (the left padding, the last token's placeholder row, the right
    padding) holds ``fill`` (0, as verl's zero-initialised tensor). Without the widths, ``total_len`` is ``T`` and no
    padding is added. The layer axis is every layer, as vLLM and SGLang return it; rows of the MoE layers only (the
    OpenAI form) need ``num_layers`` and ``moe_layers`` to be spread (``L`` stays as the rows have it without them).
    """
    rows = to_all_layers(check_rows(rows), num_layers, moe_layers, 0)
    count = len(rows)
    if prompt_width is None and response_width is None:
        start, total = 0, count + 1
    elif prompt_width is None or response_width is None or prompt_len is None:
        raise ValueError("give prompt_len, prompt_width and response_width together (or none of them)")
    else:
        start, total = prompt_width - prompt_len, prompt_width + response_width
        if start < 0:
            raise ValueError(f"prompt_len={prompt_len} is longer than prompt_width={prompt_width}")
        if start + count + 1 > total:
            raise ValueError(
                f"{count} rows (T={count + 1} tokens) from position {start} do not fit total_len={total} "
                f"(prompt_width={prompt_width} + response_width={response_width})")
    info = np.iinfo(dtype)
    if count and (rows.min() < info.min or rows.max() > info.max):
        raise ValueError(f"expert ids {rows.min()}..{rows.max()} do not fit {np.dtype(dtype).name}")
    out = np.full((1, total, rows.shape[1], rows.shape[2]), fill, dtype=dtype)
    out[0, start:start + count] = rows
    return out
