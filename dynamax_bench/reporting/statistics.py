"""Uncertainty of every number: a seeded percentile bootstrap over groups of samples, paired across cells.

Every quantity of a cell is a ratio of sums over its samples, sum(num) / sum(den): a mean when
`den` is all ones (task metrics, consistency, loop rate), and a ratio otherwise (savings: saved
FLOPs over full FLOPs; mean layers: layers over tokens). A statistic is written once, as a
function of `take`, which turns a Ratio into its value: on the observed samples (shape (1,)) for
the point estimate, and on every bootstrap resample (shape (resamples,)). A paired comparison is a
statistic of several cells taken with the SAME resampled indices, so sample i of one cell always
meets sample i of the other; a statistic may select (the best cell at a quality target) inside
itself, so the selection is resampled too.

Groups: samples that are not independent (the turns of one CoQA story share the story and the
conversation) form a group, and the bootstrap draws whole groups (a cluster bootstrap); a task of
independent samples has one group per sample, the ordinary bootstrap. A ratio of sums over the
samples of the drawn groups is the ratio of the groups' own sums, so `take` works on group sums.

The resampling is `scipy.stats.bootstrap` (vectorised, `method="percentile"`) over the group
indices, seeded with `evidence.seed`, so the same inputs and settings give the same bytes. The
interval is the percentile interval (numpy's linear quantile of the resampled statistic): BCa's
acceleration is 0/0 on a quantity that is constant over samples (consistency 1.0, a tie), and its
bias term is infinite when the point sits at the edge of the resampled values (a best-of-cells
selection); the percentile interval is defined for both, and zero-width exactly where every
resample agrees. On a few samples of a rare event it covers less than nominal
(tests/test_statistics.py measures it): that is what `evidence.min_samples` guards in the claims.

A ratio whose denominator sums to zero over a resample (decode savings of a resample that drew
only one-token answers: no decode step) has no value there; such resamples are left out of the
interval (`nanquantile`), and a quantity with no value on the observed samples has no estimate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import warnings

import numpy as np
from scipy.stats import DegenerateDataWarning, bootstrap

KIND = "percentile bootstrap over groups of samples (scipy.stats.bootstrap)"
CHUNK = 256  # resamples per vectorised call: bounds memory at CHUNK x groups indices


@dataclass(frozen=True)
class IntervalSettings:
    """The profile's `evidence` section, less what only the claims read (min_samples, margins, ...)."""

    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntervalSettings:
        return cls(**{key: data[key] for key in ("confidence", "resamples", "seed")})

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, **asdict(self)}


@dataclass(frozen=True)
class Groups:
    """Which group each sample belongs to: `codes[i]` in 0..count-1, numbered in order of first appearance."""

    codes: np.ndarray
    count: int

    @classmethod
    def of(cls, labels: Sequence[str]) -> Groups:
        index: dict[str, int] = {}
        codes = np.array([index.setdefault(label, len(index)) for label in labels], dtype=np.intp)
        return cls(codes, len(index))

    @classmethod
    def singletons(cls, n: int) -> Groups:
        return cls(np.arange(n, dtype=np.intp), n)

    @property
    def samples(self) -> int:
        return len(self.codes)

    def sums(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.codes, weights=values, minlength=self.count)


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
        den = self.den.sum()
        return float(self.num.sum() / den) if den else float("nan")


Take = Callable[[Ratio], np.ndarray]
Statistic = Callable[[Take], np.ndarray]


@dataclass(frozen=True)
class Estimate:
    """A point value with its interval over n samples in `groups` groups (the units resampled)."""

    value: float
    lo: float
    hi: float
    n: int
    groups: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def includes(self, x: float) -> bool:
        return self.lo <= x <= self.hi


def observed(ratio: Ratio) -> np.ndarray:
    return np.array([ratio.value()])


def resampled(statistics: Sequence[Statistic], groups: Groups, settings: IntervalSettings) -> np.ndarray:
    """The k statistics on the same `settings.resamples` resamples of the groups: shape (k, resamples)."""
    if groups.count < 1:
        raise ValueError("no samples to resample")
    sums: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def grouped(ratio: Ratio) -> tuple[np.ndarray, np.ndarray]:
        if id(ratio) not in sums:
            sums[id(ratio)] = (groups.sums(ratio.num), groups.sums(ratio.den))
        return sums[id(ratio)]

    def statistic(indices: np.ndarray, axis: int = -1) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.intp)

        def take(ratio: Ratio) -> np.ndarray:
            num, den = grouped(ratio)
            with np.errstate(invalid="ignore", divide="ignore"):
                return num[indices].sum(axis=-1) / den[indices].sum(axis=-1)

        return np.stack([stat(take) for stat in statistics])

    if groups.count == 1:  # one group: every resample draws it
        return np.repeat(statistic(np.zeros((1, 1), dtype=np.intp)), settings.resamples, axis=1)
    with warnings.catch_warnings():  # scipy's own interval of a distribution with nans (see the module docstring)
        warnings.simplefilter("ignore", DegenerateDataWarning)
        result = bootstrap((np.arange(groups.count),), statistic, n_resamples=settings.resamples, batch=CHUNK,
                           vectorized=True, method="percentile", rng=np.random.default_rng(settings.seed))
    return np.asarray(result.bootstrap_distribution).reshape(len(statistics), settings.resamples)


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile interval of resampled values; resamples without a value (nan) are left out."""
    alpha = 1.0 - confidence
    finite = values[np.isfinite(values)]
    if not len(finite):
        return float("nan"), float("nan")
    lo, hi = np.quantile(finite, [alpha / 2, 1.0 - alpha / 2])
    return float(lo), float(hi)


def estimate(statistic: Statistic, groups: Groups, settings: IntervalSettings,
             confidence: float | None = None) -> Estimate:
    """One statistic with its percentile interval (at `confidence`, else the settings')."""
    point = float(statistic(observed)[0])
    lo, hi = percentile_interval(resampled([statistic], groups, settings)[0], confidence or settings.confidence)
    return Estimate(point, lo, hi, groups.samples, groups.count)


def estimates(ratios: dict[str, Ratio], groups: Groups, settings: IntervalSettings) -> dict[str, Estimate]:
    """Every quantity of one cell, on one set of resamples; a quantity without a value on the observed
    samples (a ratio over nothing) is left out."""
    for name, ratio in ratios.items():
        if len(ratio.num) != groups.samples:
            raise ValueError(f"per-sample list '{name}' has {len(ratio.num)} values for {groups.samples} samples")
    names = [name for name in sorted(ratios) if np.isfinite(ratios[name].value())]
    if not names:
        return {}
    draws = resampled([lambda take, r=ratios[name]: take(r) for name in names], groups, settings)
    out = {}
    for k, name in enumerate(names):
        lo, hi = percentile_interval(draws[k], settings.confidence)
        out[name] = Estimate(ratios[name].value(), lo, hi, groups.samples, groups.count)
    return out


def lm_eval_stderr(values: Sequence[float]) -> float | None:
    """lm-eval's standard error of a mean-aggregated metric (its `mean_stderr`); None below 2 samples."""
    from lm_eval.api.metrics import mean_stderr

    return float(mean_stderr(list(values))) if len(values) >= 2 else None


def _array(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


# How a cell's per-sample lists (the `per_sample` block the score rule writes) form each quantity.
# A quantity not listed here is the mean of its own list.
DERIVED = {
    "flops.total_savings": lambda s: Ratio(_array(s["flops.full"]) - _array(s["flops.executed"]), _array(s["flops.full"])),
    "flops.decode_savings": lambda s: Ratio(_array(s["flops.decode_full"]) - _array(s["flops.decode_executed"]),
                                            _array(s["flops.decode_full"])),
    "layers.mean_executed": lambda s: Ratio(_array(s["layers.executed"]), _array(s["tokens.generated"])),
    "tokens.exitable_share": lambda s: Ratio(_array(s["tokens.generated"]) - 1.0, _array(s["tokens.generated"])),
}
# inputs of the derived quantities and the sample labels, not quantities themselves
RAW = {"ids", "groups", "flops.full", "flops.executed", "flops.decode_full", "flops.decode_executed",
       "layers.executed", "tokens.generated"}


def quantities(per_sample: dict[str, list]) -> list[str]:
    """The quantities a `per_sample` block supports: every mean list and every derived ratio whose inputs it holds
    (cells scored before decode FLOPs were kept per sample have no decode savings)."""
    derived = [q for q in DERIVED if q != "flops.decode_savings" or "flops.decode_full" in per_sample]
    return sorted([k for k in per_sample if k not in RAW] + derived)


def ratio_from(per_sample: dict[str, list], quantity: str, where: str) -> Ratio:
    """A quantity as a Ratio over the samples of a `per_sample` block (`where` names it in errors)."""
    if quantity in DERIVED and quantity in quantities(per_sample):
        return DERIVED[quantity](per_sample)
    if quantity not in per_sample or quantity in RAW:
        raise KeyError(f"{where} has no per-sample '{quantity}'; it has {quantities(per_sample)}")
    return Ratio.mean(per_sample[quantity])


def groups_of(per_sample: dict[str, list]) -> Groups:
    """The sample groups of a `per_sample` block (one per sample where it names none)."""
    return Groups.of(per_sample.get("groups", per_sample["ids"]))


def cell_name(cell: dict) -> str:
    return f"{cell['backbone']}/{cell['task']}/{cell['method']}"


def per_sample_of(cell: dict) -> dict[str, list]:
    if "per_sample" not in cell:
        raise ValueError(f"cell {cell_name(cell)} has no per-sample values (scored before intervals existed): "
                         f"rerun its score rule, e.g. snakemake --forcerun score")
    return cell["per_sample"]


def estimate_of(cell: dict, quantity: str) -> dict:
    """A cell's estimate of one quantity (its `intervals.estimates` entry: value, lo, hi, n, groups)."""
    found = cell.get("intervals", {}).get("estimates", {})
    if quantity not in found:
        raise ValueError(f"cell {cell_name(cell)} has no interval for '{quantity}' (scored before it existed?): "
                         f"rerun its score rule, e.g. snakemake --forcerun score")
    return found[quantity]


def ratio_of(cell: dict, quantity: str) -> Ratio:
    """A quantity of a cell as a Ratio over its samples."""
    return ratio_from(per_sample_of(cell), quantity, f"cell {cell_name(cell)}")


def paired_groups(cells: Sequence[dict]) -> Groups:
    """The common samples and groups of cells compared sample by sample; their sample ids must be equal."""
    first = per_sample_of(cells[0])
    for other in cells[1:]:
        if per_sample_of(other)["ids"] != first["ids"]:
            raise ValueError(f"paired comparison of {cell_name(cells[0])} and {cell_name(other)}: their sample ids "
                             f"differ, so sample i of one is not sample i of the other; rescore both cells from "
                             f"generations of one profile (same task limit and source)")
    return groups_of(first)


def paired_n(cells: Sequence[dict]) -> int:
    """The common sample count of cells compared sample by sample."""
    return paired_groups(cells).samples


def paired_difference(a: dict, b: dict, quantity: str, settings: IntervalSettings) -> Estimate:
    """quantity(a) - quantity(b) over the same samples (resampled by group), with its interval."""
    groups = paired_groups([a, b])
    ra, rb = ratio_of(a, quantity), ratio_of(b, quantity)
    return estimate(lambda take: take(ra) - take(rb), groups, settings)
