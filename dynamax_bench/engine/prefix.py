"""Batch planning: which prompts decode together, and which token prefix each one shares.

Prompts of a task often start alike: a few-shot block, TruthfulQA's QA primer, a CoQA story
followed by its turns. Sorted by their token ids, prompts that start alike sit next to each
other; runs of neighbours whose longest common TOKEN prefix stays at least MIN_SHARED_PREFIX
tokens long form a group, and the group's common prefix is computed once: every row of it then
starts from a copy of that prefix's caches. Working on token ids (not text) means a row reuses
the prefix only where its own tokenisation really starts with those tokens. The prefix stops
one token short of the shortest prompt of its group, so every row has a suffix to prefill (its
last position gives the first token).

Batches then take the prompts in order of their suffix length (the tokens after the shared prefix;
the whole prompt without prefix sharing), so a batch pads little. Batches are
consecutive runs of `batch_size` prompts of that order; the engine returns outputs in input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MIN_SHARED_PREFIX = 16  # tokens; a shorter common prefix saves less than its separate forward costs


@dataclass(frozen=True)
class Plan:
    batches: list[list[int]]  # prompt indices, in decoding order
    prefix_lengths: list[int]  # per prompt (input order): tokens taken from the shared prefix cache


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading tokens that `a` and `b` have in common, compared token by token."""
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def shared_prefix_lengths(prompts: Sequence[Sequence[int]], order: Sequence[int]) -> list[int]:
    """Per prompt, the length of the prefix shared with its group of neighbours in `order` (0: none)."""
    lengths = [0] * len(prompts)
    group: list[int] = []
    common = 0
    for index in [*order, None]:
        if index is not None and group:
            joined = common_prefix_length(prompts[group[0]][:common], prompts[index])
            if joined >= MIN_SHARED_PREFIX:
                group.append(index)
                common = joined
                continue
        if len(group) > 1:
            usable = min(common, *(len(prompts[i]) - 1 for i in group))
            if usable >= MIN_SHARED_PREFIX:
                for member in group:
                    lengths[member] = usable
        if index is not None:
            group, common = [index], len(prompts[index])
    return lengths


def plan_batches(prompts: Sequence[Sequence[int]], batch_size: int, share_prefixes: bool) -> Plan:
    """Batches of at most `batch_size` prompts, ordered to share prefixes (or to pad little)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    indices = range(len(prompts))
    if share_prefixes:
        lengths = shared_prefix_lengths(prompts, sorted(indices, key=lambda i: (list(prompts[i]), i)))
        # a batch pads its suffixes to the longest: rows of like suffix length decode together, whatever
        # prefix each continues from (CoQA's turns: half the suffix tokens a batch computed were padding)
        order = sorted(indices, key=lambda i: (-(len(prompts[i]) - lengths[i]), i))
    else:
        order = sorted(indices, key=lambda i: (-len(prompts[i]), i))
        lengths = [0] * len(prompts)
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    return Plan(batches=batches, prefix_lengths=lengths)
