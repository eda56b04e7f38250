"""Prompt prefill for the batched engine: shared prefixes computed once, then each row's suffix.

Every layer (of the kept ones) runs on the prompt, as on the batch-1 path; stateful exit rules
see each row's real positions at every exit.

- A shared prefix (engine/prefix.py) runs once, alone; its caches and rule state are kept for
  the whole `generate` call, and every row that starts with it continues from a copy.
- Transformers: one left-padded forward over the rows' suffixes. Each row's prefix K/V sit
  right-aligned before the suffix block, the padding between them is masked, and position ids
  are each row's real positions (RoPE sees what batch 1 sees).
- Mamba-2: a padded position still decays the SSM state (its dt is softplus(dt_bias) > 0), which
  corrupts a row that continues from a prefix's state; rows are prefilled one at a time from a
  copy of their prefix's conv/SSM state (the mixer's chunked scan starts from it: initial_states
  and the cached conv window, tested against the whole prompt), and their fixed-size states stack.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers.cache_utils import Cache

from dynamax_bench.engine.caches import stack_rows
from dynamax_bench.engine.generator import Strategy
from dynamax_bench.engine.rowstate import RowState, cat_rows, clone_rows
from dynamax_bench.engine.rules import ExitPoint
from dynamax_bench.engine.stacks import LayerStack, Mamba2Stack


@dataclass
class Prefilled:
    """A batch after its prompts: every row's caches, last hidden state and rule state."""

    cache: Cache
    hidden: Tensor  # (B, 1, d): each row's last prompt position after the last kept layer
    mask: Tensor  # (B, T) long: 1 on the cache's real positions, 0 on padding
    positions: Tensor  # (B,) long: each row's next position (its prompt length)
    state: RowState  # the rule's state, B rows
    starts: list[int]  # per row, the cache's first real column (host copy of what `mask` says)
    holes: list[bool]  # per row, whether padding lies between its first real column and its last


class Prefiller:
    """Prefills batches of one `generate` call under one strategy, reusing shared prefixes."""

    def __init__(self, stack: LayerStack, points: dict[int, ExitPoint], strategy: Strategy) -> None:
        self.stack = stack
        self.points = points
        self.strategy = strategy
        self.prefixes: dict[tuple[int, ...], tuple[Cache, RowState]] = {}

    def run(self, prompts: Sequence[Sequence[int]], prefix_lengths: Sequence[int]) -> Prefilled:
        if isinstance(self.stack, Mamba2Stack):
            return self._rows_apart(prompts, prefix_lengths)
        return self._padded(prompts, prefix_lengths)

    def _start(self, prompt: Sequence[int], length: int) -> tuple[Cache | None, RowState]:
        """A row's starting caches (None: empty) and a copy of its rule state, after its shared prefix."""
        if length == 0:
            return None, {}
        key = tuple(prompt[:length])
        if key not in self.prefixes:
            cache, state = self.stack.new_cache(), {}
            ids = torch.tensor([key], device=self.stack.model.device)
            self._forward(ids, cache, torch.ones_like(ids), None, [state], [length])
            self.prefixes[key] = (cache, state)
        cache, state = self.prefixes[key]
        return cache, clone_rows(state)

    def _padded(self, prompts: Sequence[Sequence[int]], prefix_lengths: Sequence[int]) -> Prefilled:
        """Transformers: the suffixes of all rows in one forward, left-padded."""
        device = self.stack.model.device
        starts = [self._start(p, n) for p, n in zip(prompts, prefix_lengths)]
        cache = stack_rows([c if c is not None else self.stack.new_cache() for c, _ in starts], self.stack.config)
        suffixes = [list(p[n:]) for p, n in zip(prompts, prefix_lengths)]
        width, longest = max(prefix_lengths), max(len(s) for s in suffixes)
        ids, mask, positions, first, holes = [], [], [], [], []
        for suffix, n in zip(suffixes, prefix_lengths):
            pad = longest - len(suffix)
            ids.append([suffix[0]] * pad + suffix)  # any valid id: padded positions are masked
            mask.append([0] * (width - n) + [1] * n + [0] * pad + [1] * len(suffix))
            positions.append([0] * pad + list(range(n, n + len(suffix))))
            first.append(width - n if n else width + pad)
            holes.append(bool(n and pad))
        ids_t = torch.tensor(ids, device=device)
        mask_t = torch.tensor(mask, device=device)
        states = [state for _, state in starts]
        hidden = self._forward(ids_t, cache, mask_t, torch.tensor(positions, device=device), states,
                               [len(s) for s in suffixes])
        lengths = torch.tensor([len(p) for p in prompts], device=device)
        return Prefilled(cache=cache, hidden=hidden[:, -1:], mask=mask_t, positions=lengths, state=cat_rows(states),
                         starts=first, holes=holes)

    def _rows_apart(self, prompts: Sequence[Sequence[int]], prefix_lengths: Sequence[int]) -> Prefilled:
        """Mamba-2: each row's suffix alone, from a copy of its prefix's states; the states stack."""
        device = self.stack.model.device
        caches, hiddens, states = [], [], []
        for prompt, n in zip(prompts, prefix_lengths):
            start, state = self._start(prompt, n)
            cache = copy.deepcopy(start) if start is not None else self.stack.new_cache()
            ids = torch.tensor([list(prompt[n:])], device=device)
            mask = torch.ones(1, len(prompt), dtype=torch.long, device=device)
            hiddens.append(self._forward(ids, cache, mask, None, [state], [ids.shape[1]])[:, -1:])
            caches.append(cache)
            states.append(state)
        lengths = torch.tensor([len(p) for p in prompts], device=device)
        mask = torch.ones(len(prompts), 1, dtype=torch.long, device=device)  # recurrent layers read no mask
        return Prefilled(cache=stack_rows(caches, self.stack.config), hidden=torch.cat(hiddens), mask=mask,
                         positions=lengths, state=cat_rows(states), starts=[0] * len(prompts),
                         holes=[False] * len(prompts))

    def _forward(
        self, ids: Tensor, cache: Cache, mask: Tensor, positions: Tensor | None, states: list[RowState],
        lengths: list[int],
    ) -> Tensor:
        """All kept layers over ids (B, S); the stateful rule reads row r's last `lengths[r]`
        positions at every exit into states[r]. Returns the hidden states (B, S, d)."""
        stack, rule = self.stack, self.strategy.rule
        hidden = stack.embed(ids)
        inputs = stack.step_inputs(hidden, cache, mask, positions)
        for index in range(self.strategy.keep_layers or stack.num_layers):
            hidden = stack.layer(index, hidden, cache, inputs)
            point = self.points.get(index + 1)
            if point is not None and rule is not None and rule.stateful:
                for row, (state, length) in enumerate(zip(states, lengths)):
                    rule.prefill(point, hidden[row:row + 1, hidden.shape[1] - length:], state)
        return hidden
