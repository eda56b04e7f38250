"""Preallocated decode caches for the batched engine: K/V with per-row lengths, Mamba-2 states.

`StaticKV` holds every layer's keys and values of a decoding batch in two tensors
(layers, B, kv_heads, capacity, head_dim), allocated once after the prompt pass. Each row has its
own `ends` (the slot its next token writes) and a slot mask (which slots hold its real tokens:
prompts are left-padded, a shared prefix leaves a hole before the suffix), so rows can advance,
roll back and leave independently, and a step writes its K/V in place: no `torch.cat`, no copy
of the cache per step. A decoder layer of transformers sees it as its cache: `update` writes the
new K/V at each row's end and returns the columns in use, for every row or, when only some rows
run the layer (`rows`, the rows that have not exited), for those rows alone.

`RecurrentStates` holds the conv and SSM states of Mamba-2 mixers (the backbone's layers, or the
`mamba` exit classifier's one layer) as the mixer's cache: it steps them in place, and when only
some rows run a layer (`select`), their states are gathered before and written back after (`release`).

Both keep a host mirror of what shapes depend on (widths, row counts), so a decode step reads
nothing back from the device to slice or mask them.

Rollback (self-speculative decoding): `StaticKV.rollback(counts)` forgets each row's last
`counts[r]` tokens in every layer (their slots are rewritten by the next step). Recurrent states
cannot be rolled back; a caller keeps copies (`RecurrentStates.clone`) before tokens it may reject.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from transformers.cache_utils import Cache, LinearAttentionCacheLayerMixin


class StaticKV:
    """Keys and values of every layer for B rows, preallocated; row r's tokens occupy the slots
    where `mask[r]` is set, and its next token writes slot `ends[r]`.

    starts: per row (host), its first real slot; holes: per row (host), whether a masked slot lies
    between its start and its end (a shared prefix before a padded suffix)."""

    def __init__(self, keys: Tensor, values: Tensor, mask: Tensor, ends: Sequence[int], starts: Sequence[int],
                 holes: Sequence[bool]) -> None:
        self.keys, self.values = keys, values  # (layers, B, kv_heads, capacity, head_dim)
        self.mask = mask  # (B, capacity) bool
        self.host_ends, self.starts, self.holes = list(ends), list(starts), list(holes)
        self.ends = torch.tensor(self.host_ends, device=keys.device)
        self.rows: Tensor | None = None  # the rows the next layer runs on (long (n,)); None: every row

    def select(self, rows: Tensor | None) -> None:
        """The next layer runs on these rows only (None: every row)."""
        self.rows = rows

    def release(self) -> None:
        self.rows = None

    @classmethod
    def from_cache(cls, cache: Cache, mask: Tensor, layers: int, capacity: int, starts: Sequence[int],
                   holes: Sequence[bool]) -> StaticKV:
        """Copy a prompt pass's cache (left-padded rows, `mask` (B, T) 0 on padding) into buffers of
        `capacity` slots per row; every row ends at column T."""
        first = cache.layers[0].keys
        size, heads, width, dim = first.shape
        if capacity < width:
            raise ValueError(f"a static cache of {capacity} slots cannot hold a prompt pass of {width}")
        keys = first.new_zeros((layers, size, heads, capacity, dim))
        values = torch.zeros_like(keys)
        for index in range(layers):
            keys[index, :, :, :width] = cache.layers[index].keys
            values[index, :, :, :width] = cache.layers[index].values
        slots = mask.new_zeros((size, capacity), dtype=torch.bool)
        slots[:, :width] = mask.bool()
        return cls(keys, values, slots, [width] * size, starts, holes)

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]

    @property
    def offset(self) -> int:
        """The first slot any row uses (attention reads from there)."""
        return min(self.starts)

    @property
    def width(self) -> int:
        """One past the last slot any row uses."""
        return max(self.host_ends)

    def dense(self) -> bool:
        """Every row's real tokens fill the slots offset..width exactly (no padding, no hole): no mask needed."""
        return not any(self.holes) and len(set(self.starts)) == 1 and len(set(self.host_ends)) == 1

    def begin(self, count: int = 1) -> None:
        """Open `count` slots after each row's end for the tokens of the next step."""
        if self.width + count > self.capacity:
            raise ValueError(f"the static cache holds {self.capacity} slots; a step needs {self.width + count}")
        slots = torch.arange(self.capacity, device=self.mask.device)
        self.mask |= (slots >= self.ends[:, None]) & (slots < self.ends[:, None] + count)

    def end(self, count: int = 1) -> None:
        """The step's tokens are written: each row's end moves past them."""
        self.ends += count
        self.host_ends = [e + count for e in self.host_ends]

    def attention_mask(self, count: int = 1) -> Tensor | None:
        """The 4D boolean mask (B, 1, count, W) of a step of `count` tokens after `begin(count)`: each
        token sees its row's real slots up to itself; None where SDPA needs none (one dense row set,
        one token: the mask a model's own forward would skip)."""
        lo, hi = self.offset, self.width + count
        if count == 1 and self.dense():
            return None
        visible = self.mask[:, lo:hi]
        if count == 1:
            return visible[:, None, None, :]
        slots = torch.arange(lo, hi, device=self.mask.device)
        own = self.ends[:, None] + torch.arange(count, device=self.mask.device)  # (B, count): each token's slot
        return (visible[:, None, :] & (slots <= own[:, :, None]))[:, None]

    def update(self, key_states: Tensor, value_states: Tensor, layer_idx: int, *args, **kwargs) -> tuple[Tensor, Tensor]:
        """Write the new K/V (n, kv_heads, q, head_dim) of the running rows at their ends; return those
        rows' K/V over the slots in use (the attention's keys and values)."""
        rows, count = self.rows, key_states.shape[2]
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if len(set(self.host_ends)) == 1:  # every row writes the same slots: a slice, no scatter
            end = self.host_ends[0]
            if rows is None:
                keys[:, :, end:end + count] = key_states
                values[:, :, end:end + count] = value_states
            else:
                keys[:, :, end:end + count].index_copy_(0, rows, key_states)
                values[:, :, end:end + count].index_copy_(0, rows, value_states)
        else:
            ends = self.ends if rows is None else self.ends.index_select(0, rows)
            slots = ends[:, None] + torch.arange(count, device=ends.device)  # (n, q)
            index = torch.arange(ends.shape[0], device=ends.device) if rows is None else rows
            keys[index[:, None], :, slots] = key_states.transpose(1, 2)
            values[index[:, None], :, slots] = value_states.transpose(1, 2)
        lo, hi = self.offset, self.width + count
        keys, values = keys[:, :, lo:hi], values[:, :, lo:hi]
        if rows is None:
            return keys, values
        return keys.index_select(0, rows), values.index_select(0, rows)

    def slot_kv(self, layer: int, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Layer `layer`'s K/V of these rows at the step's slot (their end): (n, kv_heads, head_dim) each."""
        slots = self.ends.index_select(0, rows)
        return self.keys[layer, rows, :, slots], self.values[layer, rows, :, slots]

    def write_slot(self, layers: slice, rows: Tensor, keys: Tensor, values: Tensor) -> None:
        """Set these rows' K/V at the step's slot in every layer of `layers` to keys, values (n, kv_heads, head_dim)."""
        slots = self.ends.index_select(0, rows)
        count = len(range(*layers.indices(self.keys.shape[0])))
        self.keys[layers, rows, :, slots] = keys[:, None].expand(-1, count, -1, -1)
        self.values[layers, rows, :, slots] = values[:, None].expand(-1, count, -1, -1)

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only these rows (in this order).

        Rows in ascending order (rows leaving a batch) move down in place, each over the slots in use,
        and the buffers become a view of their first rows: a row leaving near the end of a batch copies
        a few rows, not the whole cache (a copy of every layer's K/V per leaving row was a tenth of a
        sweep's decode time). Each layer's K/V stays contiguous with the same strides, so attention
        computes what it computed on a copy."""
        rows = list(rows)
        index = torch.tensor(rows, device=self.keys.device)
        if rows == sorted(set(rows)):
            used = self.width
            for target, source in enumerate(rows):
                if target != source:
                    self.keys[:, target, :, :used] = self.keys[:, source, :, :used]
                    self.values[:, target, :, :used] = self.values[:, source, :, :used]
            self.keys, self.values = self.keys[:, :len(rows)], self.values[:, :len(rows)]
        else:
            self.keys, self.values = self.keys.index_select(1, index), self.values.index_select(1, index)
        self.mask, self.ends = self.mask.index_select(0, index), self.ends.index_select(0, index)
        self.host_ends = [self.host_ends[r] for r in rows]
        self.starts = [self.starts[r] for r in rows]
        self.holes = [self.holes[r] for r in rows]

    def rollback(self, counts: Sequence[int]) -> None:
        """Forget each row's last `counts[r]` tokens (every layer); the next step writes after what is left."""
        if any(c < 0 for c in counts) or any(e - c < s for e, c, s in zip(self.host_ends, counts, self.starts)):
            raise ValueError(f"cannot roll back {list(counts)} tokens of rows ending at {self.host_ends}")
        cut = torch.tensor(list(counts), device=self.ends.device)
        slots = torch.arange(self.capacity, device=self.mask.device)
        self.mask &= ~((slots >= (self.ends - cut)[:, None]) & (slots < self.ends[:, None]))
        self.ends -= cut
        self.host_ends = [e - c for e, c in zip(self.host_ends, counts)]


class RecurrentStates:
    """Conv (B, conv_dim, kernel) and SSM (B, heads, head_dim, state) states of Mamba-2 mixers, one
    pair per layer, as the cache a transformers `Mamba2Mixer` reads and steps in place.

    After `select(rows)`, a layer works on those rows alone: `get_*_state` return a gathered copy,
    which `release` stores after the layer. A layer without state yet (None) is filled by its first
    (multi-token) forward, like transformers' own cache."""

    def __init__(self, conv: list[Tensor | None], ssm: list[Tensor | None]) -> None:
        self.conv, self.ssm = conv, ssm
        self.rows: Tensor | None = None
        self._views: dict[int, tuple[Tensor, Tensor]] = {}

    @classmethod
    def from_cache(cls, cache: Cache, layers: int) -> RecurrentStates:
        """The states of a prompt pass's cache (its tensors, not a copy)."""
        conv, ssm = [], []
        for index in range(layers):
            layer = cache.layers[index]
            if not isinstance(layer, LinearAttentionCacheLayerMixin) or not layer.has_previous_state[0]:
                raise ValueError(f"layer {index} of the prompt pass holds no Mamba-2 state")
            conv.append(layer.conv_states[0])
            ssm.append(layer.recurrent_states[0])
        return cls(conv, ssm)

    def begin(self, count: int = 1) -> None:
        """A step's start (states have no positions to open)."""

    def end(self, count: int = 1) -> None:
        """A step's end (the layers stepped the states in place)."""

    def clone(self) -> RecurrentStates:
        return RecurrentStates([None if c is None else c.clone() for c in self.conv],
                               [None if s is None else s.clone() for s in self.ssm])

    def _view(self, layer_idx: int) -> tuple[Tensor, Tensor]:
        if layer_idx not in self._views:
            rows = self.rows
            self._views[layer_idx] = (self.conv[layer_idx].index_select(0, rows),
                                      self.ssm[layer_idx].index_select(0, rows))
        return self._views[layer_idx]

    def get_conv_state(self, layer_idx: int, state_idx: int = 0) -> Tensor | None:
        if self.conv[layer_idx] is None:
            return None
        return self.conv[layer_idx] if self.rows is None else self._view(layer_idx)[0]

    def get_recurrent_state(self, layer_idx: int, state_idx: int = 0) -> Tensor | None:
        if self.ssm[layer_idx] is None:
            return None
        return self.ssm[layer_idx] if self.rows is None else self._view(layer_idx)[1]

    def is_recording_past(self, layer_idx: int) -> bool:
        return False

    def update_conv_state(self, conv_states: Tensor, layer_idx: int, state_idx: int = 0,
                          conv_kernel_size: int | None = None, **kwargs) -> Tensor:
        """A multi-token forward's conv input (B, conv_dim, T): returns it after the cached window (the
        causal conv's left context) and keeps the last `kernel` columns, as transformers' cache does."""
        previous = self.get_conv_state(layer_idx)
        kernel = conv_kernel_size if previous is None else previous.shape[-1]
        if previous is None:
            full = torch.nn.functional.pad(conv_states, (max(0, kernel - conv_states.shape[-1]), 0))
        else:
            full = torch.cat([previous, conv_states], dim=-1)
        self._store(self.conv, layer_idx, 0, full[..., -kernel:])
        return full

    def update_recurrent_state(self, recurrent_states: Tensor, layer_idx: int, state_idx: int = 0,
                               **kwargs) -> Tensor:
        return self._store(self.ssm, layer_idx, 1, recurrent_states)

    def _store(self, states: list[Tensor | None], layer_idx: int, which: int, value: Tensor) -> Tensor:
        if self.rows is not None:
            self._view(layer_idx)[which].copy_(value)
            return self._views[layer_idx][which]
        if states[layer_idx] is None:
            states[layer_idx] = value.clone()
        else:
            states[layer_idx].copy_(value)
        return states[layer_idx]

    def select(self, rows: Tensor | None) -> None:
        """The next layer runs on these rows only (None: every row): it steps gathered copies of their states."""
        self.rows = rows

    def release(self) -> None:
        """After that layer: store the gathered rows' stepped states."""
        for layer_idx, (conv, ssm) in self._views.items():
            self.conv[layer_idx].index_copy_(0, self.rows, conv)
            self.ssm[layer_idx].index_copy_(0, self.rows, ssm)
        self._views.clear()
        self.rows = None

    def keep(self, rows: Sequence[int]) -> None:
        index = torch.tensor(list(rows), device=next(c for c in self.conv if c is not None).device)
        self.conv = [None if c is None else c.index_select(0, index) for c in self.conv]
        self.ssm = [None if s is None else s.index_select(0, index) for s in self.ssm]
