"""Tolerances derived from the sample count and each value's own scale (reference/<profile>.json).

A reference value of a run with n samples is a sample estimate; a later run may move it by sampling
noise when its tokens legitimately differ (another device, another BLAS). The interval a run must
stay in is the 95% interval of that estimate:

- a proportion (every per-sample value is 0 or 1: EM, TruthfulQA's *_acc, identical-output rate,
  loop rate): the Wilson score interval at n (never zero-width, also at 0 or 1);
- a bounded average (F1, BLEU and ROUGE on their 0-100 scale, prefix agreement, mean exit layer,
  savings): a seeded percentile bootstrap over the samples; where every sample has the same value
  the bootstrap has no width, and the Wilson interval of the value rescaled to [0, 1] stands in (a
  variable bounded in [lo, hi] has at most the variance of a Bernoulli with the same mean);
- output length: tokens per sample within 90-110% of the reference (MLPerf Inference's rule for its
  LLM benchmarks, e.g. llama2-70b: TOKENS_PER_SAMPLE 294.45 -> [265.0, 323.9]).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
LENGTH_WINDOW = 0.10


def wilson(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion p observed on n samples."""
    if n <= 0:
        raise ValueError("a Wilson interval needs at least one sample")
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At p = 0 (or 1) the bound is exactly 0 (or 1); computed, it lands a rounding error inside.
    low = 0.0 if p <= 0.0 else max(0.0, centre - half)
    high = 1.0 if p >= 1.0 else min(1.0, centre + half)
    return low, high


def bootstrap(
    samples: Sequence[float] | Sequence[tuple[float, float]],
    statistic: Callable[[np.ndarray], float] | None = None,
) -> tuple[float, float]:
    """95% percentile bootstrap interval of a statistic over samples (seeded: same data, same interval).

    statistic: of the resampled rows (default: the mean of a 1-D sample); a ratio such as the mean
    exit layer per token passes (numerator, denominator) rows and its own statistic.
    """
    data = np.asarray(samples, dtype=float)
    stat = statistic or (lambda rows: float(rows.mean()))
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    picks = rng.integers(0, len(data), size=(BOOTSTRAP_RESAMPLES, len(data)))
    values = np.array([stat(data[idx]) for idx in picks])
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def ratio(rows: np.ndarray) -> float:
    """Sum of numerators over sum of denominators: a per-token mean from per-sample (sum, count) rows."""
    return float(rows[:, 0].sum() / rows[:, 1].sum())


def is_proportion(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def interval(
    value: float,
    values: Sequence[float] | Sequence[tuple[float, float]],
    bounds: tuple[float, float] | None = None,
    statistic: Callable[[np.ndarray], float] | None = None,
) -> dict:
    """The derived tolerance of one field: {low, high, rule, n}.

    values: the per-sample values the field averages, or (numerator, denominator) rows with their
    `statistic` for a per-token field; bounds: the field's scale, for the zero-width fallback of a
    quality metric (None: a structural field such as the layers `full` runs, where no width is right).
    """
    n = len(values)
    if statistic is None and is_proportion(values):
        low, high = wilson(value, n)
        return {"low": low, "high": high, "rule": f"Wilson 95% at n={n}"}
    low, high = bootstrap(values, statistic)
    rule = f"bootstrap 95% ({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}) at n={n}"
    if high - low <= 0 and bounds is not None:
        lo, hi = bounds
        scaled = min(1.0, max(0.0, (value - lo) / (hi - lo)))
        w_low, w_high = wilson(scaled, n)
        low, high = lo + w_low * (hi - lo), lo + w_high * (hi - lo)
        rule = f"Wilson 95% on the [{lo:g}, {hi:g}] scale at n={n} (every sample equal: the bootstrap has no width)"
    return {"low": min(low, value), "high": max(high, value), "rule": rule}


def length_window(value: float) -> dict:
    """Output length: within 90-110% of the reference (MLPerf Inference, tokens per sample)."""
    return {"low": value * (1 - LENGTH_WINDOW), "high": value * (1 + LENGTH_WINDOW),
            "rule": f"±{LENGTH_WINDOW:.0%} of the reference length (MLPerf Inference tokens per sample)"}
