"""Tolerances derived from the sample count and each value's own scale (reference/<profile>.json).

A reference value of a run with n samples is a sample estimate; a later run may move it by sampling
noise when its tokens legitimately differ (another device, another BLAS). The interval a run must
stay in is the 95% interval of that estimate:

- a proportion (every per-sample value is 0 or 1: EM, TruthfulQA's *_acc, identical-output rate,
  loop rate): the Wilson score interval at n (scipy.stats.binomtest; never zero-width, also at 0 or 1);
- a bounded average (F1, BLEU and ROUGE on their 0-100 scale, prefix agreement, mean exit layer,
  savings): a seeded percentile bootstrap over the samples (scipy.stats.bootstrap, per-token means
  resampling each sample's numerator and denominator together); where every sample has the same value
  the bootstrap has no width, and the Wilson interval of the value rescaled to [0, 1] stands in (a
  variable bounded in [lo, hi] has at most the variance of a Bernoulli with the same mean);
- output length: tokens per sample within 90-110% of the reference (MLPerf Inference's rule for its
  LLM benchmarks, e.g. llama2-70b: TOKENS_PER_SAMPLE 294.45 -> [265.0, 323.9]);
- an early-exit cell where no token exited: its mean exit layer and savings are widened by the exits
  a rebuilt classifier could make at the Wilson bound (`without_exits`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
LENGTH_WINDOW = 0.10
# statistic(numerators, denominators, axis) of per-sample (numerator, denominator) rows
RatioStatistic = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def wilson(p: float, n: int) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion p observed on n samples (scipy.stats.binomtest).

    p * n is a count where p is a proportion of 0/1 samples; elsewhere (a tied bounded average
    rescaled to [0, 1]) it need not be, and the interval is the hull of those of the counts on
    either side of it: never narrower than the formula's at p, wider by at most one count's step.
    """
    if n <= 0:
        raise ValueError("a Wilson interval needs at least one sample")
    count = p * n
    nearest = round(count)
    counts = {nearest} if abs(count - nearest) <= 1e-9 * n else {int(np.floor(count)), int(np.ceil(count))}
    bounds = [stats.binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson") for k in sorted(counts)]
    return float(bounds[0].low), float(bounds[-1].high)


def bootstrap(samples: Sequence[float] | Sequence[tuple[float, float]],
              statistic: RatioStatistic | None = None) -> tuple[float, float]:
    """95% percentile bootstrap interval (scipy.stats.bootstrap, seeded: same data, same interval).

    samples: per-sample values, whose mean is the statistic; or per-sample (numerator, denominator)
    rows resampled together, with a `statistic` of both, e.g. `ratio` for a per-token mean.
    """
    data = np.asarray(samples, dtype=float)
    if len(data) < 2:  # one sample resamples to itself
        value = float(data.mean()) if statistic is None else float(statistic(data[:, 0], data[:, 1], -1))
        return value, value
    if statistic is None:
        arrays, paired, function = (data,), False, np.mean
    else:
        arrays, paired, function = (data[:, 0], data[:, 1]), True, statistic
    result = stats.bootstrap(arrays, function, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=CONFIDENCE,
                             method="percentile", paired=paired, vectorized=True,
                             rng=np.random.default_rng(BOOTSTRAP_SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def ratio(numerators: np.ndarray, denominators: np.ndarray, axis: int = -1) -> np.ndarray:
    """Sum of numerators over sum of denominators: a per-token mean from per-sample (sum, count) rows."""
    return np.sum(numerators, axis=axis) / np.sum(denominators, axis=axis)


def saving(numerators: np.ndarray, denominators: np.ndarray, axis: int = -1) -> np.ndarray:
    """1 - executed / full FLOPs from per-sample (executed, full) rows."""
    return 1.0 - ratio(numerators, denominators, axis)


def is_proportion(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def interval(
    value: float,
    values: Sequence[float] | Sequence[tuple[float, float]],
    bounds: tuple[float, float] | None = None,
    statistic: RatioStatistic | None = None,
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


def without_exits(layers: dict, savings: dict, n: int, num_layers: int, first_exit: int, decode_share: float) -> None:
    """Widen the exit-driven fields of an early-exit cell whose reference never exited (every token ran every
    layer): their bootstrap sees no exit, so it has no width (`layers`) or only the classifier's cost spread
    (`savings`), and a rebuilt classifier that now exits on a few tokens would fail them. The mean exit layer
    takes the Wilson interval on the [first exit, L] scale at n (as a tied bounded average does), and the
    savings move by what that many exits could save of the decode FLOPs (`decode_share` of the full model's),
    either way (a fill may cost more than the layers it replaces)."""
    w_low, _ = wilson(1.0, n)
    lowest = first_exit + w_low * (num_layers - first_exit)
    layers.update(low=min(layers["low"], lowest),
                  rule=f"Wilson 95% on the [{first_exit}, {num_layers}] scale at n={n} (no token exited: the "
                       "bootstrap has no width)")
    moved = (num_layers - lowest) / num_layers * decode_share
    savings.update(low=savings["low"] - moved, high=savings["high"] + moved,
                   rule=f"{savings['rule']}, widened by {moved:.3g}: the decode savings of exits at the Wilson "
                        "bound of the mean exit layer (no token exited)")


def length_window(value: float) -> dict:
    """Output length: within 90-110% of the reference (MLPerf Inference, tokens per sample)."""
    return {"low": value * (1 - LENGTH_WINDOW), "high": value * (1 + LENGTH_WINDOW),
            "rule": f"±{LENGTH_WINDOW:.0%} of the reference length (MLPerf Inference tokens per sample)"}
