"""Training-free exit rules: a confidence computed from the backbone itself, no distill job."""

from __future__ import annotations

import torch
from torch import Tensor

from dynamax_bench.engine.rules import ExitPoint, ExitRule


class MaxSoftmaxRule(ExitRule):
    """CALM's softmax response: the largest probability of the LM head read at the exit."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def confidence(self, point: ExitPoint, hidden: Tensor) -> float:
        return float(point.head(hidden).softmax(-1).max())


class SaturationRule(ExitRule):
    """Hidden-state saturation (CALM): cosine similarity of the token's hidden state at this exit
    with the one at the previous exit position; the first exit has nothing to compare with and
    never exits."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.previous: Tensor | None = None

    def confidence(self, point: ExitPoint, hidden: Tensor) -> float:
        previous, self.previous = self.previous, hidden[0, -1].float()
        if point.index == 0 or previous is None:
            return 0.0
        return float(torch.nn.functional.cosine_similarity(previous, self.previous, dim=0))

    def reset(self) -> None:
        self.previous = None
