"""Top-k choice: the simulated early exit on hand-built tokens, the interval, and the rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dynamax_bench.classifiers.selection import choose_top_k, document_interval, simulate_early_exit


def test_simulated_early_exit_takes_the_first_confident_exit() -> None:
    # 4 tokens, exits after 2 and 3 of 4 layers. Token 0 leaves at 2 (rank 0: consistent), token 1
    # at 2 (rank 4: not), token 2 at 3 (rank 0 there), token 3 reaches no exit (full model).
    confidences = {2: torch.tensor([0.9, 0.95, 0.1, 0.2]), 3: torch.tensor([0.1, 0.99, 0.8, 0.5])}
    ranks = {2: torch.tensor([0, 4, 2, 1], dtype=torch.int32), 3: torch.tensor([3, 0, 0, 0], dtype=torch.int32)}
    sim = simulate_early_exit(confidences, ranks, [2, 2], num_layers=4, threshold=0.8, seed=0)
    assert sim["consistency"] == 0.75 and sim["exit_rate"] == 0.75
    assert sim["savings"] == pytest.approx(1 - (2 + 2 + 3 + 4) / 16)
    assert sim["tokens"] == 4 and sim["documents"] == 2
    assert sim["interval"][0] <= 0.75 <= sim["interval"][1]
    never = simulate_early_exit(confidences, ranks, [4], num_layers=4, threshold=1.01, seed=0)
    assert never["consistency"] == 1.0 and never["savings"] == 0.0 and never["interval"] == [1.0, 1.0]


def test_document_interval_is_seeded_and_resamples_whole_documents() -> None:
    successes, counts = np.array([10, 0, 5, 9]), np.array([10, 10, 10, 10])
    a, b = document_interval(successes, counts, seed=1), document_interval(successes, counts, seed=1)
    assert a == b and 0.0 <= a[0] < 0.6 < a[1] <= 1.0
    # one document: nothing to resample, the interval is the point
    assert document_interval(np.array([3]), np.array([4]), seed=1) == [0.75, 0.75]


def sim(consistency: float, low: float, savings: float) -> dict:
    return {"consistency": consistency, "interval": [low, 1.0], "savings": savings}


def test_the_largest_k_within_the_interval_of_k1_at_every_threshold_is_chosen() -> None:
    simulated = {
        1: {"0.5": sim(0.90, 0.85, 0.10), "0.9": sim(0.97, 0.95, 0.02)},
        3: {"0.5": sim(0.86, 0.80, 0.20), "0.9": sim(0.96, 0.93, 0.05)},  # within both floors
        5: {"0.5": sim(0.88, 0.80, 0.25), "0.9": sim(0.94, 0.90, 0.07)},  # below the floor at 0.9
        10: {"0.5": sim(0.70, 0.60, 0.40), "0.9": sim(0.80, 0.70, 0.20)},
    }
    chosen, decision = choose_top_k(simulated)
    assert chosen == 3 and decision["reference"] == 1
    assert decision["candidates"]["5"]["thresholds"]["0.5"]["admissible"]
    assert not decision["candidates"]["5"]["admissible"]
    assert decision["candidates"]["3"]["thresholds"]["0.9"]["floor"] == 0.95
    assert choose_top_k({1: simulated[1]})[0] == 1  # one candidate fixes k
    with pytest.raises(ValueError, match="classifiers.thresholds"):
        choose_top_k({1: {}, 3: {}})
