"""Training-free exit rules: a confidence computed from the backbone itself, no distill job."""

from __future__ import annotations

import torch
from torch import Tensor

from dynamax_bench.engine.rowstate import RowState
from dynamax_bench.engine.rules import ExitPoint, ExitRule


class MaxSoftmaxRule(ExitRule):
    """CALM's softmax response: the largest probability of the LM head read at the exit."""

    probability = True

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def confidence(self, point: ExitPoint, hidden: Tensor, state: RowState) -> Tensor:
        return point.head(hidden).softmax(-1).amax(-1)


class SaturationRule(ExitRule):
    """Hidden-state saturation (CALM): cosine similarity of the token's hidden state at this exit
    with the one at the previous exit position. The first exit has nothing to compare with: its
    confidence is the constant 0, so a token leaves there only at threshold 0 (every row alike,
    never a near tie). The previous exit's state is kept per row under 'previous' (within one step:
    every row at an exit was at the exit before it)."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def confidence(self, point: ExitPoint, hidden: Tensor, state: RowState) -> Tensor:
        current = hidden[:, -1].float()  # (B, d)
        previous = state.get("previous")
        state["previous"] = current
        if point.index == 0:
            return 0.0
        return torch.nn.functional.cosine_similarity(previous, current, dim=-1)
