"""The batched engine checked against the reference path, row by row.

Exactness is the batched engine's contract: every row's tokens and exit trace equal that
prompt's batch-1 run without prefix cache, except where a near tie (engine/neartie.py) let the
batch shape flip a decision. `verify` re-decodes on the reference path the rows that met a near
tie (or every row), compares, and explains each difference by the near ties the batched row
recorded at its first differing token; a difference with none is a bug.

A near-tie row is re-decoded through its last near tie, not to its end: a decision that is not
a near tie sits further from flipping than any deviation between batch shapes (the bounds are
11.5x the largest one measured), which is why a row without near ties is not re-decoded at all;
so where batch 1 agrees through the last near tie, it agrees on the rest of the row, and only a
row that differs there is decoded to its end at batch 1 (that output replaces the batched one).

`verify_each` checks the strategies of one batched call (a sweep's thresholds) row by row: a row
re-decoded under several strategies with the same kept layers runs its batch-1 prompt pass once
(each stateful rule building its state from it), and each strategy decodes from its own copy of it
(the same tensors it would compute alone).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from dynamax_bench.engine.generator import EarlyExitGenerator, Generation, PromptPass, Strategy
from dynamax_bench.engine.neartie import Bounds, NearTie
from dynamax_bench.engine.promptstore import PromptStore


@dataclass(frozen=True)
class Difference:
    """A row whose batched output differs from its reference run, from token `token` on."""

    row: int
    token: int  # first index where the token or its exit layer differs
    reasons: list[NearTie]  # the batched row's near ties at that token (empty: unexplained)

    def as_dict(self) -> dict:
        return {"row": self.row, "token": self.token, "reasons": [r.as_dict() for r in self.reasons]}


@dataclass
class Agreement:
    """How a batched run agrees with the reference path (the record a cell file carries)."""

    rows: int
    rows_with_near_ties: int
    rows_redecoded: int
    tokens_redecoded: int = 0  # positions decoded at batch 1 (a near-tie row: through its last near tie)
    rows_differing: int = 0
    tokens_differing: int = 0  # positions whose token or exit layer differs (a missing one counts)
    differences: list[Difference] = field(default_factory=list)
    bounds: Bounds | None = None  # the near-tie bounds the batched run recorded its ties under
    # The reference run of every re-decoded row (row -> its batch-1 generation); not in the record.
    references: dict[int, Generation] = field(default_factory=dict, repr=False)

    @property
    def unexplained(self) -> list[Difference]:
        return [d for d in self.differences if not d.reasons]

    def as_dict(self) -> dict:
        return {
            "rows": self.rows,
            "rows_with_near_ties": self.rows_with_near_ties,
            "rows_redecoded": self.rows_redecoded,
            "tokens_redecoded": self.tokens_redecoded,
            "rows_differing": self.rows_differing,
            "tokens_differing": self.tokens_differing,
            "unexplained": len(self.unexplained),
            "differences": [d.as_dict() for d in self.differences],
            "bounds": None if self.bounds is None else dataclasses.asdict(self.bounds),
        }


def trace(generation: Generation) -> list[tuple[int, int]]:
    """(token, exit layer) per generated position."""
    return list(zip(generation.token_ids, generation.exit_layers))


def first_difference(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int | None:
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


def verify(
    reference: EarlyExitGenerator,
    prompts: Sequence[str | Sequence[int]],
    strategy: Strategy,
    generations: Sequence[Generation],
    *,
    all_rows: bool = False,
) -> Agreement:
    """Re-decode rows of a batched run at batch 1 and compare (`all_rows`: every row to its end, else
    the rows that met a near tie, through their last near tie and to the end where they differ)."""
    return verify_each(reference, prompts, [strategy], [generations], all_rows=all_rows)[0]


def verify_each(
    reference: EarlyExitGenerator,
    prompts: Sequence[str | Sequence[int]],
    strategies: Sequence[Strategy],
    generations_each: Sequence[Sequence[Generation]],
    *,
    all_rows: bool = False,
    store: PromptStore | None = None,
) -> list[Agreement]:
    """`verify` for each strategy of one batched call, row by row: a row's batch-1 prompt passes are
    computed in one forward per set of kept layers (`EarlyExitGenerator.prompt_passes`, or taken from
    `store`, which keeps them across calls) and copied for each strategy that re-decodes it."""
    if len(strategies) != len(generations_each):
        raise ValueError(f"{len(strategies)} strategies but {len(generations_each)} lists of generations")
    redo: list[set[int]] = []
    agreements: list[Agreement] = []
    for generations in generations_each:
        if len(prompts) != len(generations):
            raise ValueError(f"{len(prompts)} prompts but {len(generations)} generations")
        tied = [row for row, g in enumerate(generations) if g.near_ties]
        redo.append(set(range(len(prompts))) if all_rows else set(tied))
        agreements.append(Agreement(rows=len(prompts), rows_with_near_ties=len(tied), rows_redecoded=len(redo[-1])))
    for row in sorted(set().union(*redo)):
        ks = [k for k in range(len(strategies)) if row in redo[k]]
        passes = reference.prompt_passes(prompts[row], [strategies[k] for k in ks], store)
        for k in ks:
            _check_row(agreements[k], reference, prompts[row], strategies[k], generations_each[k][row], row,
                       passes[strategies[k].prompt_pass()], all_rows)
    return agreements


def _check_row(agreement: Agreement, reference: EarlyExitGenerator, prompt: str | Sequence[int], strategy: Strategy,
               batched: Generation, row: int, start: PromptPass, all_rows: bool) -> None:
    """Re-decode one row from a copy of its prompt pass and record how it compares."""
    ours = trace(batched)
    if not all_rows:
        through = max(tie.token for tie in batched.near_ties) + 1
        head = reference.generate(prompt, strategy, through=through, start=start.copy())
        agreement.tokens_redecoded += len(head.token_ids)
        if first_difference(ours[:through], trace(head)) is None:
            return  # equal through the last near tie: equal to the end
    agreement.references[row] = reference.generate(prompt, strategy, start=start.copy())
    agreement.tokens_redecoded += len(agreement.references[row].token_ids)
    theirs = trace(agreement.references[row])
    start_at = first_difference(ours, theirs)
    if start_at is None:
        return
    agreement.rows_differing += 1
    agreement.tokens_differing += sum(
        1 for i in range(max(len(ours), len(theirs)))
        if i >= len(ours) or i >= len(theirs) or ours[i] != theirs[i]
    )
    reasons = [tie for tie in batched.near_ties if tie.token == start_at]
    agreement.differences.append(Difference(row=row, token=start_at, reasons=reasons))
