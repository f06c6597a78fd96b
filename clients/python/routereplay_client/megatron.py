"""Megatron-Core's ``RouterReplay.set_replay_data``: one ``[tokens, topk]`` int64 index tensor per MoE layer."""

from __future__ import annotations

from typing import List, Optional, Sequence, Union

import numpy as np

from .layers import check_rows, select_layers
from .placeholder import placeholder_rows

Rows = Union[np.ndarray, Sequence[np.ndarray]]


def to_megatron_replay(
    rows: Rows,
    moe_layers: Optional[Sequence[int]] = None,
    *,
    num_tokens: Optional[int] = None,
    fill: str = "repeat",
    num_experts: Optional[int] = None,
    as_torch: bool = False,
) -> list:
    """
    The replay data of ``RouterReplay.set_replay_data``: a list with one int64 ``[tokens, topk]`` array per MoE layer, in
    the order Megatron-Core creates its routers (layer order), row ``t`` the experts of token ``t``.

    ``rows`` is one sequence's rows ``[T-1, layers, K]`` or a list of them (a packed micro-batch, sequences concatenated
    in order, as THD packing lays tokens out). ``moe_layers`` picks the MoE layers along the rows' layer axis: the model's
    ``moe_layers`` (``/get_model_info``) for rows of every layer (``/generate``, :func:`to_slime`), None for rows that
    already hold only the MoE layers (the OpenAI form); with pipeline parallelism, only the stage's.

    A sequence of ``T`` tokens has ``T-1`` rows (its last token was never fed through the model), but Megatron routes all
    ``T``: the last token gets a placeholder row made as ``fill`` says (``repeat``: the row before, the default;
    ``distinct``: slime's ``arange % num_experts``; ``zeros``). ``num_tokens`` pads the whole to that many tokens with the
    same fill (a micro-batch padded to a multiple of the tensor-parallel size). The placeholder and padding tokens carry
    no loss. With ``as_torch``, the arrays are ``torch.Tensor`` (needs PyTorch).
    """
    sequences = [rows] if isinstance(rows, np.ndarray) else list(rows)
    if not sequences:
        raise ValueError("rows holds no sequence")
    parts: List[np.ndarray] = []
    for index, sequence in enumerate(sequences):
        selected = select_layers(check_rows(sequence, f"rows[{index}]" if len(sequences) > 1 else "rows"), moe_layers)
        last = selected[-1] if len(selected) else None
        parts.append(selected.astype(np.int64))
        parts.append(placeholder_rows(1, last, selected.shape[1], selected.shape[2], np.int64, fill, num_experts))
    tokens = np.concatenate(parts)
    if num_tokens is not None:
        if num_tokens < len(tokens):
            raise ValueError(f"num_tokens={num_tokens} is fewer than the {len(tokens)} tokens of these sequences")
        padding = placeholder_rows(num_tokens - len(tokens), tokens[-1], tokens.shape[1], tokens.shape[2], np.int64, fill, num_experts)
        tokens = np.concatenate([tokens, padding])
    per_layer = [np.ascontiguousarray(tokens[:, layer, :]) for layer in range(tokens.shape[1])]
    if as_torch:
        import torch

        return [torch.from_numpy(indices) for indices in per_layer]
    return per_layer
