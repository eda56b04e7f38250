"""Exit rules: the pluggable decision taken at each exit position of a decode step, per row.

A rule sees the hidden states after `layer` layers of the rows still running at that exit,
(B, 1, d), and returns one confidence per row, a (B,) tensor in [0, 1]; a row's token exits when
its confidence >= threshold. Trained classifiers (calm, ffn, mamba) and training-free rules (e.g.
max-softmax of the LM head) all implement this interface; a plug-in implements `confidence`.

State: the engine owns one `RowState` per rule and batch (named tensors, one row per sequence)
and passes the rows the call concerns, so it can select, stack and copy rows (finished rows
leave, a shared prefix's state is copied to every row that starts from it). A rule may keep
anything there; `stateful` rules also see the prompt (`prefill`, every layer ran on it) and, at
the exits after the one a token left at, the exited hidden state (`advance`), so their state
follows every position of the text.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.nn import Module

from dynamax_bench.engine.rowstate import RowState


class ExitHead:
    """The final norm + LM head as a rule reads it at an exit, hidden (B, 1, d) -> float32 logits (B, vocab).

    It remembers its last call, so the batched engine reads the token of a row that leaves at this
    exit from the logits the rule computed there (max-softmax) instead of running the head again."""

    def __init__(self, head: Callable[[Tensor], Tensor]) -> None:
        self.head = head
        self.last: tuple[Tensor, Tensor] | None = None

    def __call__(self, hidden: Tensor) -> Tensor:
        logits = self.head(hidden)
        self.last = (hidden, logits)
        return logits

    def take(self, hidden: Tensor) -> Tensor | None:
        """The logits of the last call if it read this very tensor, else None; forgets them either way."""
        last, self.last = self.last, None
        return last[1] if last is not None and last[0] is hidden else None


@dataclass
class ExitPoint:
    """Where a decision is taken: exit number `index` (0-based) after `layer` layers executed."""

    index: int
    layer: int
    head: Callable[[Tensor], Tensor] = field(repr=False)  # an ExitHead in the engines


class ExitRule:
    """Base class: never exits. Subclasses override `confidence` (and `prefill`/`advance` if stateful)."""

    threshold: float = 1.0
    stateful: bool = False  # sees the prompt and the exited states after its exit (prefill, advance)
    probability: bool = False  # the confidence is a softmax probability: its near-tie band narrows near 1

    def prefill(self, point: ExitPoint, hidden: Tensor, state: RowState) -> None:
        """See the prompt's hidden states (B, T, d) at one exit (stateful rules only)."""

    def prompt_key(self) -> Hashable:
        """Stateful rules: equal keys build the same state from the same prompt (the engine then
        builds it once for both). The rule itself by default: no two rules share a state."""
        return self

    def confidence(self, point: ExitPoint, hidden: Tensor, state: RowState) -> Tensor | float:
        """Confidence (B,) in [0, 1] that each row's token can leave at this exit; hidden is (B, 1, d).
        A number applies to every row, and is the same at every batch shape (never a near tie)."""
        return 0.0

    def advance(self, point: ExitPoint, hidden: Tensor, state: RowState) -> None:
        """These rows' tokens left before this exit: stateful rules step with the exited states (B, 1, d)."""


def decide(rule: ExitRule, point: ExitPoint, hidden: Tensor, state: RowState) -> tuple[Tensor, Tensor, bool]:
    """Float32 confidences (B,) and exit decisions (B,) of the rows in `hidden`, and whether they are
    exact: a rule that returns a number gives every row, at every batch shape, the same value, so
    its decisions cannot be near ties. Both engine paths decide here, so the comparison with the
    threshold is the same float32 one."""
    value = rule.confidence(point, hidden, state)
    confidence = torch.as_tensor(value, dtype=torch.float32, device=hidden.device).expand(hidden.shape[0])
    return confidence, confidence >= rule.threshold, isinstance(value, (int, float))


class ConstantRule(ExitRule):
    """A rule with a fixed confidence: 0.0 never exits, 1.0 exits at the first exit position."""

    def __init__(self, value: float, threshold: float = 0.5) -> None:
        self.value = value
        self.threshold = threshold

    def confidence(self, point: ExitPoint, hidden: Tensor, state: RowState) -> float:
        return self.value


class ClassifierRule(ExitRule):
    """Trained exit classifiers, one per exit layer: confidence = softmax(logits)[exit].

    A stateful classifier (`stateful = True`, e.g. the `mamba` kind) keeps one recurrent state
    per exit and row, under the keys '<layer>.<name>' of the rule's state: the prompt builds it,
    every generated position steps it, through `confidence` where the token reached the exit and
    `advance` where it left earlier.
    """

    probability = True

    def __init__(self, classifiers: dict[int, Module], threshold: float) -> None:
        self.classifiers = classifiers
        self.threshold = threshold
        self.stateful = any(clf.stateful for clf in classifiers.values())

    def _logits(self, point: ExitPoint, hidden: Tensor, state: RowState) -> Tensor:
        clf = self.classifiers[point.layer]
        if not clf.stateful:
            return clf(hidden)
        prefix = f"{point.layer}."
        own = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        logits = clf(hidden, own)
        state.update({prefix + key: value for key, value in own.items()})
        return logits

    def prefill(self, point: ExitPoint, hidden: Tensor, state: RowState) -> None:
        if self.classifiers[point.layer].stateful:
            self._logits(point, hidden, state)

    def prompt_key(self) -> Hashable:
        """The classifier modules themselves: rules built on one loaded set (every threshold of a
        generate job) read the prompt alike, whatever their thresholds."""
        return tuple(self.classifiers.values())

    def confidence(self, point: ExitPoint, hidden: Tensor, state: RowState) -> Tensor:
        return self._logits(point, hidden, state)[:, -1].float().softmax(-1)[:, 1]

    def advance(self, point: ExitPoint, hidden: Tensor, state: RowState) -> None:
        if self.classifiers[point.layer].stateful:
            self._logits(point, hidden, state)
