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
- One backbone pass for every strategy with the same kept layers: a stateful rule only reads the
  hidden states at the exits, so each rule (one per `Strategy.prompt_pass` key) builds its own
  state from the pass's tensors, the tensors a pass of its own would compute.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers.cache_utils import Cache

from dynamax_bench.engine.caches import stack_rows
from dynamax_bench.engine.generator import Strategy, prompt_rules
from dynamax_bench.engine.rowstate import RowState, cat_rows, clone_rows
from dynamax_bench.engine.rules import ExitPoint
from dynamax_bench.engine.stacks import LayerStack, Mamba2Stack


Keyed = dict[Hashable, RowState]  # one row's rule state per `Strategy.prompt_pass` key


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
    """Prefills batches of one `generate` call for the strategies with one set of kept layers, reusing
    shared prefixes: `run` gives each strategy's `Strategy.prompt_pass` key its `Prefilled`."""

    def __init__(self, stack: LayerStack, points: dict[int, ExitPoint], strategies: Sequence[Strategy]) -> None:
        if len({strategy.keep_layers for strategy in strategies}) != 1:
            raise ValueError("one Prefiller serves strategies with the same kept layers")
        self.stack = stack
        self.points = points
        self.keep_layers = strategies[0].keep_layers
        self.keys = list(dict.fromkeys(strategy.prompt_pass() for strategy in strategies))
        self.rules = prompt_rules(strategies)
        self.prefixes: dict[tuple[int, ...], tuple[Cache, Keyed]] = {}

    def run(self, prompts: Sequence[Sequence[int]], prefix_lengths: Sequence[int]) -> dict[Hashable, Prefilled]:
        if isinstance(self.stack, Mamba2Stack):
            return self._rows_apart(prompts, prefix_lengths)
        return self._padded(prompts, prefix_lengths)

    def _start(self, prompt: Sequence[int], length: int) -> tuple[Cache | None, Keyed]:
        """A row's starting caches (None: empty) and a copy of each key's rule state, after its shared prefix."""
        if length == 0:
            return None, {key: {} for key in self.keys}
        prefix = tuple(prompt[:length])
        if prefix not in self.prefixes:
            cache, states = self.stack.new_cache(), {key: {} for key in self.keys}
            ids = torch.tensor([prefix], device=self.stack.model.device)
            self._forward(ids, cache, torch.ones_like(ids), None, [states], [length])
            self.prefixes[prefix] = (cache, states)
        cache, states = self.prefixes[prefix]
        return cache, {key: clone_rows(state) for key, state in states.items()}

    def _passes(self, cache: Cache, hidden: Tensor, mask: Tensor, positions: Tensor, states: list[Keyed],
                starts: list[int], holes: list[bool]) -> dict[Hashable, Prefilled]:
        """Each key's `Prefilled`: the one pass's tensors, that key's rule state."""
        return {key: Prefilled(cache=cache, hidden=hidden, mask=mask, positions=positions,
                               state=cat_rows([row[key] for row in states]), starts=starts, holes=holes)
                for key in self.keys}

    def _padded(self, prompts: Sequence[Sequence[int]], prefix_lengths: Sequence[int]) -> dict[Hashable, Prefilled]:
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
        return self._passes(cache, hidden[:, -1:], mask_t, lengths, states, first, holes)

    def _rows_apart(self, prompts: Sequence[Sequence[int]], prefix_lengths: Sequence[int]
                    ) -> dict[Hashable, Prefilled]:
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
        return self._passes(stack_rows(caches, self.stack.config), torch.cat(hiddens), mask, lengths, states,
                            [0] * len(prompts), [False] * len(prompts))

    def _forward(
        self, ids: Tensor, cache: Cache, mask: Tensor, positions: Tensor | None, states: list[Keyed],
        lengths: list[int],
    ) -> Tensor:
        """All kept layers over ids (B, S); each stateful rule reads row r's last `lengths[r]` positions
        at every exit into states[r][its key]. Returns the hidden states (B, S, d)."""
        stack = self.stack
        hidden = stack.embed(ids)
        inputs = stack.step_inputs(hidden, cache, mask, positions)
        for index in range(self.keep_layers or stack.num_layers):
            hidden = stack.layer(index, hidden, cache, inputs)
            point = self.points.get(index + 1)
            if point is None:
                continue
            for key, rule in self.rules.items():
                for row, (state, length) in enumerate(zip(states, lengths)):
                    rule.prefill(point, hidden[row:row + 1, hidden.shape[1] - length:], state[key])
        return hidden
