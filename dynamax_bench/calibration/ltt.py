"""Learn-Then-Test (Angelopoulos et al. 2021), as CALM calibrates its exit thresholds (Schuster et al. 2022).

The risk of a threshold is the share of calibration units whose early-exit output differs from the
full model's. For a consistency target 1 - delta, each threshold of a grid carries the null hypothesis
"its risk exceeds delta". The grid is tested from the most conservative threshold down (fixed-sequence
testing): a hypothesis is rejected while its p-value is at most epsilon, and testing stops at the first
one that is not. Every rejected threshold then has risk <= delta, all at once, with probability at least
1 - epsilon over the draw of the calibration split; the calibrated threshold is the lowest rejected one.
No threshold rejected: none is certified, and the method must not exit (it runs as the full model).

A unit is a group of samples (a CoQA story and its turns; a TriviaQA question alone): it fails when any
of its samples differs from the full model's output, so its risk bounds every sample's and the units
stay independent draws. The loss is 0/1, so the exact binomial tail is the p-value: the probability of
seeing at most the observed failures among n units if the risk were delta. It is valid for any n, and at
least as powerful as the Hoeffding-Bentkus bound CALM uses for bounded losses.
"""

from __future__ import annotations

from collections.abc import Sequence

from scipy.stats import binom


def p_value(failures: int, units: int, delta: float) -> float:
    """P(Binomial(units, delta) <= failures): small when so few failures are unlikely at risk delta."""
    if not 0 <= failures <= units:
        raise ValueError(f"{failures} failures among {units} units")
    return float(binom.cdf(failures, units, delta))


def rejected_prefix(p_values: Sequence[float], epsilon: float) -> int:
    """Fixed-sequence testing: how many leading hypotheses (thresholds, most conservative first) are rejected."""
    count = 0
    for p in p_values:
        if p > epsilon:
            break
        count += 1
    return count


def units_needed(delta: float, epsilon: float) -> int:
    """The fewest units that can certify risk <= delta at all (no failure among them: (1 - delta)^n <= epsilon)."""
    n = 1
    while (1.0 - delta) ** n > epsilon:
        n += 1
    return n
