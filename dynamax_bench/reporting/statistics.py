"""Uncertainty of every number: a seeded percentile bootstrap over samples, paired across cells.

Every quantity of a cell is a ratio of sums over its samples, sum(num) / sum(den): a mean when
`den` is all ones (task metrics, consistency, loop rate), and a ratio otherwise (total savings:
saved FLOPs over full FLOPs; mean layers: layers over tokens). A statistic is written once, as a
function of `take`, which turns a Ratio into its value: on the observed samples (shape (1,)) for
the point estimate, and on every bootstrap resample of the samples (shape (resamples,)). A paired
comparison is a statistic of several cells taken with the SAME resampled indices, so sample i of
one cell always meets sample i of the other; a statistic may select (the best cell at a quality
target) inside itself, so the selection is resampled too.

Interval: percentile bootstrap (the confidence/2 and 1 - confidence/2 quantiles of the
resampled statistic, numpy's linear quantile). Not BCa: its acceleration is 0/0 on a quantity
that is constant over samples (consistency 1.0 everywhere, a tie), and its bias term is infinite
when the point sits at the edge of the resampled values, as it does for the max over cells; the
percentile interval is defined for both, and is exactly zero-width where every resample gives the
same value. On a few samples of a rare event it covers less than nominal (tests/test_statistics.py
measures it): that is what `evidence.min_samples` guards in the claims.

Resampled indices come from numpy's PCG64 seeded with `evidence.seed`, drawn in fixed chunks, so
the same inputs and settings give the same bytes on every run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

KIND = "percentile bootstrap over samples"
CHUNK = 256  # resamples drawn at once: bounds memory at CHUNK x n indices


@dataclass(frozen=True)
class IntervalSettings:
    """The profile's `evidence` section, less what only the claims read (min_samples)."""

    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntervalSettings:
        return cls(**{key: data[key] for key in ("confidence", "resamples", "seed")})

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, **asdict(self)}


@dataclass(frozen=True)
class Ratio:
    """sum(num) / sum(den) over a cell's samples."""

    num: np.ndarray
    den: np.ndarray

    @classmethod
    def mean(cls, values: Sequence[float]) -> Ratio:
        values = np.asarray(values, dtype=np.float64)
        return cls(values, np.ones_like(values))

    def value(self) -> float:
        return float(self.num.sum() / self.den.sum())


Take = Callable[[Ratio], np.ndarray]
Statistic = Callable[[Take], np.ndarray]


@dataclass(frozen=True)
class Estimate:
    """A point value with its interval over n samples."""

    value: float
    lo: float
    hi: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def includes(self, x: float) -> bool:
        return self.lo <= x <= self.hi


def observed(ratio: Ratio) -> np.ndarray:
    return np.array([ratio.value()])


def resampled_indices(n: int, settings: IntervalSettings) -> Iterator[np.ndarray]:
    """The bootstrap's index sets, CHUNK at a time: row r holds the n sample indices of resample r."""
    if n < 1:
        raise ValueError("no samples to resample")
    rng = np.random.default_rng(settings.seed)
    for start in range(0, settings.resamples, CHUNK):
        yield rng.integers(0, n, size=(min(CHUNK, settings.resamples - start), n))


def draws(statistics: Sequence[Statistic], n: int, settings: IntervalSettings) -> tuple[np.ndarray, np.ndarray]:
    """Point values (k,) and resampled values (k, resamples) of k statistics on the same resamples."""
    points = np.array([float(stat(observed)[0]) for stat in statistics])
    out = np.empty((len(statistics), settings.resamples))
    start = 0
    for idx in resampled_indices(n, settings):
        def take(ratio: Ratio, idx: np.ndarray = idx) -> np.ndarray:
            return ratio.num[idx].sum(axis=1) / ratio.den[idx].sum(axis=1)

        for k, stat in enumerate(statistics):
            out[k, start:start + len(idx)] = stat(take)
        start += len(idx)
    if not np.isfinite(out).all():
        raise ValueError("a resampled statistic is not finite (a ratio whose denominator sums to zero)")
    return points, out


def percentile_interval(resampled: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    lo, hi = np.quantile(resampled, [alpha / 2, 1.0 - alpha / 2])
    return float(lo), float(hi)


def estimate(statistic: Statistic, n: int, settings: IntervalSettings, confidence: float | None = None) -> Estimate:
    """One statistic with its percentile interval (at `confidence`, else the settings')."""
    points, resampled = draws([statistic], n, settings)
    lo, hi = percentile_interval(resampled[0], confidence or settings.confidence)
    return Estimate(float(points[0]), lo, hi, n)


def estimates(ratios: dict[str, Ratio], settings: IntervalSettings) -> dict[str, Estimate]:
    """Every quantity of one cell, on one set of resamples."""
    names = sorted(ratios)
    n = len(ratios[names[0]].num)
    if any(len(ratios[name].num) != n for name in names):
        raise ValueError(f"per-sample lists of unequal length: { {k: len(r.num) for k, r in ratios.items()} }")
    stats = [lambda take, r=ratios[name]: take(r) for name in names]
    points, resampled = draws(stats, n, settings)
    out = {}
    for k, name in enumerate(names):
        lo, hi = percentile_interval(resampled[k], settings.confidence)
        out[name] = Estimate(float(points[k]), lo, hi, n)
    return out


def lm_eval_stderr(values: Sequence[float]) -> float | None:
    """lm-eval's standard error of a mean-aggregated metric (its `mean_stderr`); None below 2 samples."""
    from lm_eval.api.metrics import mean_stderr

    return float(mean_stderr(list(values))) if len(values) >= 2 else None


# How a cell's per-sample lists (the `per_sample` block the score rule writes) form each quantity.
# A quantity not listed here is the mean of its own list.
DERIVED = {
    "flops.total_savings": lambda s: Ratio(np.subtract(s["flops.full"], s["flops.executed"], dtype=np.float64),
                                           np.asarray(s["flops.full"], dtype=np.float64)),
    "layers.mean_executed": lambda s: Ratio(np.asarray(s["layers.executed"], dtype=np.float64),
                                            np.asarray(s["tokens.generated"], dtype=np.float64)),
    "tokens.exitable_share": lambda s: Ratio(np.asarray(s["tokens.generated"], dtype=np.float64) - 1.0,
                                             np.asarray(s["tokens.generated"], dtype=np.float64)),
}
RAW = {"ids", "flops.full", "flops.executed", "layers.executed", "tokens.generated"}  # inputs, not quantities


def quantities(per_sample: dict[str, list]) -> list[str]:
    """The quantities a `per_sample` block supports: every mean list and every derived ratio."""
    return sorted([k for k in per_sample if k not in RAW] + list(DERIVED))


def ratio_from(per_sample: dict[str, list], quantity: str, where: str) -> Ratio:
    """A quantity as a Ratio over the samples of a `per_sample` block (`where` names it in errors)."""
    if quantity in DERIVED:
        return DERIVED[quantity](per_sample)
    if quantity not in per_sample:
        raise KeyError(f"{where} has no per-sample '{quantity}'; it has {quantities(per_sample)}")
    return Ratio.mean(per_sample[quantity])


def cell_name(cell: dict) -> str:
    return f"{cell['backbone']}/{cell['task']}/{cell['method']}"


def per_sample_of(cell: dict) -> dict[str, list]:
    if "per_sample" not in cell:
        raise ValueError(f"cell {cell_name(cell)} has no per-sample values (scored before intervals existed): "
                         f"rerun its score rule, e.g. snakemake --forcerun score")
    return cell["per_sample"]


def estimate_of(cell: dict, quantity: str) -> dict:
    """A cell's estimate of one quantity (its `intervals.estimates` entry: value, lo, hi, n)."""
    found = cell.get("intervals", {}).get("estimates", {})
    if quantity not in found:
        raise ValueError(f"cell {cell_name(cell)} has no interval for '{quantity}' (scored before intervals "
                         f"existed?): rerun its score rule, e.g. snakemake --forcerun score")
    return found[quantity]


def ratio_of(cell: dict, quantity: str) -> Ratio:
    """A quantity of a cell as a Ratio over its samples."""
    return ratio_from(per_sample_of(cell), quantity, f"cell {cell_name(cell)}")


def paired_n(cells: Sequence[dict]) -> int:
    """The common sample count of cells compared sample by sample; their sample ids must be equal."""
    first = cells[0]
    for other in cells[1:]:
        if per_sample_of(other)["ids"] != per_sample_of(first)["ids"]:
            raise ValueError(f"paired comparison of {cell_name(first)} and {cell_name(other)}: their sample ids "
                             f"differ, so sample i of one is not sample i of the other; rescore both cells from "
                             f"generations of one profile (same task limit and source)")
    return len(per_sample_of(first)["ids"])


def paired_difference(a: dict, b: dict, quantity: str, settings: IntervalSettings) -> Estimate:
    """quantity(a) - quantity(b) over the same samples, with its interval."""
    n = paired_n([a, b])
    ra, rb = ratio_of(a, quantity), ratio_of(b, quantity)
    return estimate(lambda take: take(ra) - take(rb), n, settings)
