"""Choosing the top-k relaxation on held-out tokens, with a simulated early exit (no generation).

A label relaxed to top-k (the exit's token is among the full model's k best) has more positives,
so its classifiers exit earlier and save more, and may change the output more often. The
question is whether they change it more than the noise of the measurement. On the validation
split, per token: take the first exit whose classifier confidence >= threshold (none: the full
model); the token is consistent when that exit's top-1 is the full model's (rank 0). The chosen
k is the largest candidate whose simulated consistency stays at or above the lower end of the
95% interval of the smallest candidate's (k=1), at every threshold of the profile. The interval
is a seeded bootstrap over whole documents (tokens within a document are not independent).

The simulation reads the oracle store's hidden states, which come from a full forward pass; in
generation the layers after an exit see filled caches instead, so it estimates, not measures.
Savings here count layers only (no classifier cost): 1 - mean layers executed / L.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

BOOTSTRAP_SAMPLES = 1000
LEVEL = 0.95
CRITERION = (
    "largest k whose simulated early-exit consistency on the validation split is >= the lower end of "
    f"the {LEVEL:.0%} document-bootstrap interval of the smallest candidate's, at every threshold"
)


def document_interval(successes: np.ndarray, counts: np.ndarray, seed: int) -> list[float]:
    """Percentile interval of sum(successes) / sum(counts), resampling documents with replacement."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(counts), size=(BOOTSTRAP_SAMPLES, len(counts)))
    ratios = successes[picks].sum(1) / np.maximum(counts[picks].sum(1), 1)
    tail = (1 - LEVEL) / 2 * 100
    return [float(np.percentile(ratios, tail)), float(np.percentile(ratios, 100 - tail))]


def simulate_early_exit(confidences: dict[int, Tensor], ranks: dict[int, Tensor], lengths: list[int],
                        num_layers: int, threshold: float, seed: int) -> dict:
    """Consistency (with its interval), layer savings and exit rate of exiting at the first exit
    whose confidence >= threshold; confidences and ranks are per exit, (N,) in document order."""
    n = len(next(iter(ranks.values())))
    layers = torch.full((n,), float(num_layers))
    consistent = torch.ones(n, dtype=torch.bool)
    decided = torch.zeros(n, dtype=torch.bool)
    for e in sorted(confidences):
        fire = (confidences[e] >= threshold) & ~decided
        layers[fire] = float(e)
        consistent[fire] = ranks[e][fire] == 0
        decided |= fire
    per_document = np.array([int(part.sum()) for part in torch.split(consistent, lengths)])
    return {
        "threshold": threshold,
        "consistency": float(consistent.float().mean()),
        "interval": document_interval(per_document, np.array(lengths), seed),
        "savings": float(1 - layers.mean() / num_layers),
        "exit_rate": float(decided.float().mean()),
        "tokens": n,
        "documents": len(lengths),
    }


def simulate_thresholds(logits: dict[int, Tensor], ranks: dict[int, Tensor], lengths: list[int], num_layers: int,
                        thresholds: list[float], seed: int) -> dict[str, dict]:
    """`simulate_early_exit` at every threshold, keyed by the threshold as text."""
    confidences = {e: out.softmax(-1)[:, 1] for e, out in logits.items()}
    return {str(t): simulate_early_exit(confidences, ranks, lengths, num_layers, t, seed) for t in thresholds}


def choose_top_k(simulated: dict[int, dict[str, dict]]) -> tuple[int, dict]:
    """The chosen k and, per candidate and threshold, whether it is admissible and why.

    simulated: {k: simulate_thresholds(...) of the classifiers trained at k} on the validation split.
    """
    if not all(simulated.values()):
        raise ValueError("no threshold to compare the candidates at; give classifiers.thresholds at least one value")
    reference = min(simulated)
    decisions = {}
    for k, by_threshold in sorted(simulated.items()):
        checks = {}
        for t, sim in by_threshold.items():
            floor = simulated[reference][t]["interval"][0]
            checks[t] = {"consistency": sim["consistency"], "floor": floor, "savings": sim["savings"],
                         "admissible": k == reference or sim["consistency"] >= floor}
        decisions[str(k)] = {"admissible": all(c["admissible"] for c in checks.values()), "thresholds": checks}
    chosen = max(k for k in simulated if decisions[str(k)]["admissible"])
    return chosen, {"chosen": chosen, "reference": reference, "criterion": CRITERION, "candidates": decisions}
