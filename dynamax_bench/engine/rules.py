"""Exit rules: the pluggable decision taken at each exit position of a decode step.

A rule sees the hidden state after `layer` layers and returns a confidence in [0, 1]; the
token exits when confidence >= threshold. Trained classifiers (calm, ffn, mamba) and
training-free rules (e.g. max-softmax of the LM head) all implement this interface.

Lifecycle per sample: `reset()`, `prefill()` with the prompt's hidden states at every exit
(stateful rules build their state), then per generated token `confidence()` at each exit
reached and `advance()` at the exits the token skipped, so stateful rules see every position.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor
from torch.nn import Module


@dataclass
class ExitPoint:
    """Where a decision is taken: exit number `index` (0-based) after `layer` layers executed."""

    index: int
    layer: int
    head: Callable[[Tensor], Tensor] = field(repr=False)  # hidden -> float32 logits (final norm + LM head)


class ExitRule:
    """Base class: never exits. Subclasses override `confidence` (and the state hooks if stateful)."""

    threshold: float = 1.0

    def reset(self) -> None:
        """Forget the previous sample's state."""

    def prefill(self, point: ExitPoint, hidden: Tensor) -> None:
        """See the prompt's hidden states (1, T, d) at one exit; all layers ran on the prompt."""

    def confidence(self, point: ExitPoint, hidden: Tensor) -> float:
        """Confidence in [0, 1] that the current token can leave at this exit; hidden is (1, 1, d)."""
        return 0.0

    def advance(self, point: ExitPoint, hidden: Tensor) -> None:
        """The token exited before this exit: stateful rules step with the exited hidden state."""

    def should_exit(self, point: ExitPoint, hidden: Tensor) -> bool:
        return self.confidence(point, hidden) >= self.threshold


class ConstantRule(ExitRule):
    """A rule with a fixed confidence: 0.0 never exits, 1.0 exits at the first exit position."""

    def __init__(self, value: float, threshold: float = 0.5) -> None:
        self.value = value
        self.threshold = threshold

    def confidence(self, point: ExitPoint, hidden: Tensor) -> float:
        return self.value


class ClassifierRule(ExitRule):
    """Trained exit classifiers, one per exit layer: confidence = softmax(logits)[exit].

    A stateful classifier (`stateful = True`, e.g. the `mamba` kind) keeps one recurrent state
    per exit for the current sample: the prompt builds it, every generated position steps it,
    through `confidence` where the token reached the exit and `advance` where it left earlier.
    """

    def __init__(self, classifiers: dict[int, Module], threshold: float) -> None:
        self.classifiers = classifiers
        self.threshold = threshold
        self.states: dict[int, object] = {}

    def reset(self) -> None:
        self.states = {layer: clf.new_state() for layer, clf in self.classifiers.items() if clf.stateful}

    def _logits(self, point: ExitPoint, hidden: Tensor) -> Tensor:
        return self.classifiers[point.layer](hidden, self.states.get(point.layer))

    def prefill(self, point: ExitPoint, hidden: Tensor) -> None:
        if point.layer in self.states:
            self._logits(point, hidden)

    def confidence(self, point: ExitPoint, hidden: Tensor) -> float:
        return float(self._logits(point, hidden)[0, -1].float().softmax(-1)[1])

    def advance(self, point: ExitPoint, hidden: Tensor) -> None:
        if point.layer in self.states:
            self._logits(point, hidden)
