"""A multi-turn rollout's routing rows, gathered turn by turn with ``routed_experts_start`` (``routed_experts_start_len``)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from .layers import check_rows


def accumulate(held: Optional[np.ndarray], rows: np.ndarray, start: int) -> np.ndarray:
    """
    The rows of positions ``0 .. start + len(rows) - 1``: ``held`` (positions ``0 ..``) followed by ``rows`` (positions
    ``start ..``). A turn asked with ``start`` below ``len(held)`` overlaps the rows held; its rows replace them (the
    newest answer wins, as when every turn returns all rows). ``start`` beyond ``len(held)`` would leave a gap and is an
    error.
    """
    rows = check_rows(rows)
    if start < 0:
        raise ValueError(f"start must be >= 0; got {start}")
    if held is None:
        if start != 0:
            raise ValueError(f"the first rows must start at 0 (no rows are held); these start at {start}")
        return rows.copy()
    held = check_rows(held, "held")
    if start > len(held):
        raise ValueError(f"these rows start at {start}, beyond the {len(held)} rows held: positions {len(held)}..{start - 1} would be missing")
    if held.shape[1:] != rows.shape[1:]:
        raise ValueError(f"rows of shape [*, {rows.shape[1]}, {rows.shape[2]}] do not continue rows of shape [*, {held.shape[1]}, {held.shape[2]}]")
    dtype = np.promote_types(held.dtype, rows.dtype)
    return np.concatenate([held[:start].astype(dtype, copy=False), rows.astype(dtype, copy=False)])


class RoutingAccumulator:
    """
    One rollout's rows across turns. Ask each turn with ``routed_experts_start`` (``/v1``) or ``routed_experts_start_len``
    (``/generate``) set to :attr:`next_start`, then :meth:`add` the turn's rows with the start the server echoed::

        acc = RoutingAccumulator()
        for turn in turns:
            out = client.generate(input_ids=ids, ..., return_routed_experts=True, routed_experts_start_len=acc.next_start)
            acc.add(out["routing"], out["routing_start"])
        acc.rows  # [T-1, layers, K] for the last turn's T tokens
    """

    def __init__(self) -> None:
        self._rows: Optional[np.ndarray] = None

    @property
    def rows(self) -> Optional[np.ndarray]:
        """The rows held (positions ``0 .. next_start - 1``), or None before the first turn."""
        return self._rows

    @property
    def next_start(self) -> int:
        """How many rows are held: the start to ask the next turn with."""
        return 0 if self._rows is None else len(self._rows)

    def add(self, rows: np.ndarray, start: int) -> np.ndarray:
        """Adds a turn's rows (positions ``start ..``) and returns every row held."""
        self._rows = accumulate(self._rows, rows, start)
        return self._rows
