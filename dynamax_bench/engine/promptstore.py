"""Batch-1 prompt forwards kept across calls, for a job that re-decodes the same prompts many times.

A calibration job decodes its split at threshold after threshold, in rounds, and checks each round's
near-tie rows against batch 1 (engine/correctness.py): the same prompt's batch-1 forward would run in
its trajectory pass and again in every round that re-decodes it. The forward depends only on the
prompt and the kept layers, so the store keeps it (the caches, the last hidden state and the hidden
states at each exit, from which any stateful rule builds its state): a pass from the store is the
pass a fresh forward computes, tensor for tensor, and like it is decoded from a copy (`PromptPass.copy`). Least recently used forwards leave
once the store holds more than its byte budget.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import Tensor

if TYPE_CHECKING:
    from transformers.cache_utils import Cache

    from dynamax_bench.engine.rowstate import RowState

# Bytes of forwards a store holds: a default-profile calibration split's are under 1 GiB (SmolLM2 CoQA:
# 80 prompts of about 200 tokens); a 7B backbone's split keeps its most recently used forwards.
BUDGET_BYTES = 2 * 2**30


@dataclass
class PromptForward:
    """A prompt's forward through the kept layers on the reference path, and the rule states built from it."""

    cache: Cache
    hidden: Tensor  # (1, T, d): the last kept layer's output
    exits: dict[int, Tensor]  # exit layer -> (1, T, d): the hidden states there
    states: dict[Hashable, RowState] = field(default_factory=dict)  # by Strategy.prompt_pass key

    def nbytes(self) -> int:
        """The bytes of its tensors: hidden states and every cache layer's (K/V, or conv and SSM states);
        the rule states, a few kB per exit, are not counted."""
        tensors = [self.hidden, *self.exits.values()]
        for layer in self.cache.layers:
            for value in vars(layer).values():
                values = value if isinstance(value, (list, tuple)) else [value]
                tensors += [v for v in values if isinstance(v, Tensor)]
        return sum(t.numel() * t.element_size() for t in tensors)


class PromptStore:
    """Prompt forwards by (model, exit layers, kept layers, prompt ids), least recently used first out past
    `budget` bytes; `hits` and `misses` count the lookups."""

    def __init__(self, budget: int = BUDGET_BYTES) -> None:
        self.budget = budget
        self.forwards: OrderedDict[tuple, tuple[PromptForward, int]] = OrderedDict()
        self.held = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> PromptForward | None:
        found = self.forwards.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self.forwards.move_to_end(key)
        return found[0]

    def put(self, key: tuple, forward: PromptForward) -> None:
        size = forward.nbytes()
        if size > self.budget:
            return
        self.forwards[key] = (forward, size)
        self.held += size
        while self.held > self.budget:
            _, (_, freed) = self.forwards.popitem(last=False)
            self.held -= freed
