"""The layer axis of routing rows: every hidden layer (SGLang's and vLLM's layout) or only the MoE layers (RouteReplay's OpenAI form)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def check_rows(rows: np.ndarray, name: str = "rows") -> np.ndarray:
    """``rows`` as an integer array of shape ``[rows, layers, K]``; anything else is a ``ValueError`` naming it."""
    rows = np.asarray(rows)
    if rows.ndim != 3:
        raise ValueError(f"{name} must have shape [rows, layers, K]; got shape {rows.shape}")
    if not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"{name} must hold integer expert ids; got dtype {rows.dtype}")
    return rows


def expand_to_all_layers(rows: np.ndarray, moe_layers: Sequence[int], num_layers: int, dense_fill: int = 0) -> np.ndarray:
    """
    Rows of the MoE layers only (``[R, len(moe_layers), K]``) spread over every layer (``[R, num_layers, K]``): MoE layer
    ``i`` goes to layer ``moe_layers[i]``; the other (dense) layers hold ``dense_fill``.
    """
    rows = check_rows(rows)
    moe_layers = [int(layer) for layer in moe_layers]
    if rows.shape[1] != len(moe_layers):
        raise ValueError(f"rows have {rows.shape[1]} layers but moe_layers names {len(moe_layers)}")
    if any(layer < 0 or layer >= num_layers for layer in moe_layers):
        raise ValueError(f"moe_layers {moe_layers} must lie in [0, num_layers={num_layers})")
    if len(set(moe_layers)) != len(moe_layers):
        raise ValueError(f"moe_layers {moe_layers} repeats a layer")
    expanded = np.full((rows.shape[0], num_layers, rows.shape[2]), dense_fill, dtype=rows.dtype)
    expanded[:, moe_layers, :] = rows
    return expanded


def to_all_layers(rows: np.ndarray, num_layers: Optional[int], moe_layers: Optional[Sequence[int]], dense_fill: int = 0) -> np.ndarray:
    """
    Rows with one entry per hidden layer: returned as they are when they already have ``num_layers`` layers (or when
    ``num_layers`` is not given), spread with :func:`expand_to_all_layers` when they have one per MoE layer.
    """
    rows = check_rows(rows)
    if num_layers is None or rows.shape[1] == num_layers:
        return rows
    if moe_layers is None:
        raise ValueError(
            f"rows have {rows.shape[1]} layers, not num_layers={num_layers}: give moe_layers (the MoE layers' indices, "
            "as /get_model_info and the routing object name them) to spread them over every layer")
    return expand_to_all_layers(rows, moe_layers, num_layers, dense_fill)


def select_layers(rows: np.ndarray, layers: Optional[Sequence[int]]) -> np.ndarray:
    """The rows of ``layers`` (indices into the rows' layer axis), in that order; every layer when ``layers`` is None."""
    rows = check_rows(rows)
    if layers is None:
        return rows
    layers = [int(layer) for layer in layers]
    if any(layer < 0 or layer >= rows.shape[1] for layer in layers):
        raise ValueError(f"moe_layers {layers} must lie in [0, {rows.shape[1]}) (the rows' layer axis)")
    return rows[:, layers, :]
