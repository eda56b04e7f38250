"""Per-row state of exit rules: named tensors with one row per sequence (dimension 0).

The engine owns every rule's state, so one rule object serves the batch-1 reference path and the
batched path at once, and the engine can reshape the batch without knowing what a rule keeps:
select the rows still decoding, copy a shared prefix's state to every row that starts from it,
stack rows prefilled apart. A rule reads and writes its entries in place or by assignment; a
key first written for a subset of rows starts at zero for the others.
"""

from __future__ import annotations

import torch
from torch import Tensor

RowState = dict[str, Tensor]  # name -> (rows, ...)


def select_rows(state: RowState, rows: Tensor) -> RowState:
    """A copy of the given rows (rows: (n,) long)."""
    return {key: value.index_select(0, rows) for key, value in state.items()}


def write_rows(state: RowState, rows: Tensor, part: RowState, num_rows: int) -> None:
    """Write `part` (one row per entry of `rows`) back into `state`, which holds `num_rows` rows."""
    for key, value in part.items():
        if key not in state:
            state[key] = value.new_zeros((num_rows, *value.shape[1:]))
        state[key].index_copy_(0, rows, value)


def cat_rows(states: list[RowState]) -> RowState:
    """Stack states of separately built rows (same keys in every one)."""
    keys = states[0].keys()
    if any(s.keys() != keys for s in states):
        raise ValueError(f"rule states to stack have different entries: {[sorted(s) for s in states]}")
    return {key: torch.cat([s[key] for s in states]) for key in keys}


def clone_rows(state: RowState) -> RowState:
    """An independent copy (rows continuing from a shared prefix must not write into it)."""
    return {key: value.clone() for key, value in state.items()}
