"""The `<kind>_fresh` variant of a stateful classifier: its state starts at the first generated token.

The `mamba` classifier builds its recurrent state over the prompt (a pass at every exit position, which
the cost ledger counts) and then steps it at every generated position. Started fresh instead, it reads
only the generated text: the ablation that measures what the prompt pass buys. Without a prompt pass the
rule reads the prompt like a stateless one, so it shares the batch's prompt forward with them.
"""

from __future__ import annotations

from collections.abc import Hashable

from torch import Tensor

from dynamax_bench.engine.rowstate import RowState
from dynamax_bench.engine.rules import ClassifierRule, ExitPoint


class FreshStateRule(ClassifierRule):
    """A stateful classifier rule that skips the prompt: the state is empty when the first decision is taken."""

    def prefill(self, point: ExitPoint, hidden: Tensor, state: RowState) -> None:
        """The prompt is not read."""

    def prompt_key(self) -> Hashable:
        return None
