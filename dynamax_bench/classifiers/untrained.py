"""Exit rules without a distill job, for engine tests and benchmarks.

Untrained classifiers still need realistic inputs and thresholds to exercise the engine: inputs
standardised with the exit's own statistics (as `distill` does), and a threshold that a chosen
share of exit decisions clears, so rows leave at different exits in the same step. The
threshold sits halfway between two observed confidences, never on one. `untrained_rule` does
both for any registered kind (training-free rules only get the threshold). (Not the threshold
calibration of the study, which picks a trained classifier's threshold for a consistency target.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dynamax_bench.classifiers.registry import build_classifier, is_trained, training_free_rule
from dynamax_bench.engine.generator import EarlyExitGenerator, Strategy
from dynamax_bench.engine.rowstate import RowState
from dynamax_bench.engine.rules import ClassifierRule, ExitPoint, ExitRule, decide


def exit_hidden_states(reference: EarlyExitGenerator, prompts: Sequence[str]) -> dict[int, Tensor]:
    """Per exit layer, the prompts' hidden states there, (positions, d), from one full forward each."""
    stack = reference.stack
    seen: dict[int, list[Tensor]] = {layer: [] for layer in reference.points}
    with torch.inference_mode():
        for prompt in prompts:
            ids = torch.tensor([reference.tokenize(prompt)], device=reference.device)
            cache = stack.new_cache()
            hidden = stack.embed(ids)
            inputs = stack.step_inputs(hidden, cache, torch.ones_like(ids))
            for index in range(stack.num_layers):
                hidden = stack.layer(index, hidden, cache, inputs)
                if index + 1 in seen:
                    seen[index + 1].append(hidden[0])
    return {layer: torch.cat(states) for layer, states in seen.items()}


def standardised_classifiers(classifiers: dict[int, torch.nn.Module], states: dict[int, Tensor]) -> ClassifierRule:
    """Set each classifier's input standardisation from its exit's hidden states; threshold 0.5
    until `set_exit_share` sets it."""
    for layer, clf in classifiers.items():
        with torch.no_grad():
            clf.mean.copy_(states[layer].mean(0))
            clf.scale.copy_(1.0 / states[layer].std(0).clamp_min(1e-6))
    return ClassifierRule(classifiers, threshold=0.5)


class _Recorder(ExitRule):
    """Never exits; keeps the confidences the wrapped rule gives."""

    def __init__(self, rule: ExitRule) -> None:
        self.rule = rule
        self.stateful = rule.stateful
        self.values: dict[int, list[float]] = {}

    def prefill(self, point: ExitPoint, hidden: Tensor, state: RowState) -> None:
        self.rule.prefill(point, hidden, state)

    def confidence(self, point: ExitPoint, hidden: Tensor, state: RowState) -> float:
        self.values.setdefault(point.index, []).extend(decide(self.rule, point, hidden, state)[0].tolist())
        return 0.0


def set_exit_share(rule: ExitRule, reference: EarlyExitGenerator, prompts: Sequence[str], exit_share: float) -> ExitRule:
    """Set `rule.threshold` so that about `exit_share` of its decisions on these prompts' decode
    steps clear it, counted at the first exit whose confidences differ (so the rows of one step
    split between that exit and later ones, which a share over all exits does not guarantee);
    returns the rule."""
    recorder = _Recorder(rule)
    strategy = Strategy.early_exit(recorder, reference.stack.policies[0])
    for prompt in prompts:
        reference.generate(prompt, strategy)
    for index in sorted(recorder.values):  # saturation gives no confidence at its first exit
        values = sorted(recorder.values[index])
        cut = round((1.0 - exit_share) * len(values))
        for offset in range(len(values)):  # the nearest gap between two different confidences
            for i in (cut + offset, cut - offset):
                if 1 <= i < len(values) and values[i - 1] < values[i]:
                    rule.threshold = (values[i - 1] + values[i]) / 2
                    return rule
    raise ValueError(f"set_exit_share saw no two different confidences at any exit on {len(prompts)} prompts")


def untrained_rule(kind: str, reference: EarlyExitGenerator, prompts: Sequence[str], exit_share: float,
                    seed: int = 0) -> ExitRule:
    """A rule of a registered kind at every exit of `reference`: seeded untrained classifiers
    standardised on these prompts' exit states, or the training-free rule; its threshold set so
    that `exit_share` of the decisions on these prompts clear it."""
    torch.manual_seed(seed)
    if is_trained(kind):
        hidden = reference.model.config.hidden_size
        classifiers = {layer: build_classifier(kind, hidden).eval() for layer in reference.points}
        rule = standardised_classifiers(classifiers, exit_hidden_states(reference, prompts))
    else:
        rule = training_free_rule(kind, 0.5)
    return set_exit_share(rule, reference, prompts, exit_share)
