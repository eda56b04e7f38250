"""The full model's trajectory on the calibration split, with every exit method's confidence along it.

An early-exit run of a rule follows the full model's trajectory exactly until its first exit: the same
layers run on the same inputs (the reference path, batch 1), so the rule sees the same hidden states and
gives the same confidences. A threshold above every confidence a sample's trajectory shows therefore never
exits on that sample, whose output is then the full model's; only the other samples need a decode at that
threshold. One pass records the confidences of every method at once and yields the full model's outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor
from tqdm import tqdm

from dynamax_bench.engine import EarlyExitGenerator, Generation, Strategy
from dynamax_bench.engine.promptstore import PromptStore
from dynamax_bench.engine.rowstate import RowState
from dynamax_bench.engine.rules import ExitPoint, ExitRule, decide


class ConfidenceRecorder(ExitRule):
    """Never exits; at every exit of every decode step records each wrapped rule's confidence. Each rule
    keeps its own state (a stateful rule's prompt pass and steps), one prompt at a time (`start`)."""

    def __init__(self, rules: dict[str, ExitRule]) -> None:
        self.rules = rules
        self.stateful = any(rule.stateful for rule in rules.values())
        self.states: dict[str, RowState] = {}
        self.values: dict[str, list[float]] = {}

    def start(self) -> None:
        self.states = {kind: {} for kind in self.rules}
        self.values = {kind: [] for kind in self.rules}

    def prefill(self, point: ExitPoint, hidden: Tensor, state: RowState) -> None:
        for kind, rule in self.rules.items():
            if rule.stateful:
                rule.prefill(point, hidden, self.states[kind])

    def confidence(self, point: ExitPoint, hidden: Tensor, state: RowState) -> float:
        if hidden.shape[0] != 1:
            raise ValueError("the confidence recorder runs on the reference path, one prompt at a time")
        for kind, rule in self.rules.items():
            self.values[kind].append(float(decide(rule, point, hidden, self.states[kind])[0][0]))
        return 0.0

    def matrix(self, kind: str, exits: int) -> np.ndarray:
        """The prompt's confidences of one rule, (decode steps, exits), in step and exit order."""
        return np.asarray(self.values[kind], dtype=np.float64).reshape(-1, exits)


def record_trajectories(engine: EarlyExitGenerator, prompts: Sequence[str], rules: dict[str, ExitRule],
                        policy: str, store: PromptStore | None = None) -> tuple[list[Generation], dict[str, list[np.ndarray]]]:
    """The full model's generation of every prompt, and per rule its confidences along each one
    (decode steps x exits; the first token comes from the prompt pass and is never a decision). A `store`
    keeps each prompt's forward for the checks of the decodes that follow."""
    recorder = ConfidenceRecorder(rules)
    strategy = Strategy.early_exit(recorder, policy)  # never exits: the policy never applies
    exits = len(engine.points)
    generations, confidences = [], {kind: [] for kind in rules}
    for prompt in tqdm(prompts, desc="full trajectories", unit="sample"):
        recorder.start()
        start = engine.prompt_passes(prompt, [strategy], store)[strategy.prompt_pass()]
        generations.append(engine.generate(prompt, strategy, start=start.copy()))  # the store keeps the pass
        for kind in rules:
            confidences[kind].append(recorder.matrix(kind, exits))
    return generations, confidences


def simulated_exits(confidences: np.ndarray, exit_positions: Sequence[int], num_layers: int,
                    threshold: float) -> list[int]:
    """The per-token exit trace a threshold gives on a full trajectory's confidences: the prompt pass's
    token at L, then per decode step the first exit whose confidence reaches the threshold (L where none
    does). What the rule would do were the hidden states after an exit still the full model's: an
    estimate of where it exits, checked by a real decode."""
    fired = confidences.astype(np.float32) >= np.float32(threshold)  # as rules.decide compares
    layers = np.where(fired.any(axis=1), np.asarray(exit_positions)[fired.argmax(axis=1)], num_layers)
    return [num_layers, *layers.astype(int).tolist()]
