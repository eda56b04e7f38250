"""Table 6: each claim of the paper, checked on this run's cells: holds, fails or inconclusive.

A claim is checked by comparisons (one per backbone and task; for pruning, one per pruning level).
Each compares two sides A and B over the same samples (their sample ids must be equal) through the
paired difference D = A - B, with a percentile bootstrap interval (statistics.py). A side may pick
the best of several cells (the most savings at a quality target): the pick is made again inside
every resample, so the interval carries the selection too. A comparison reads

- inconclusive when it cannot be formed (the reason is named, e.g. one threshold in the sweep),
  when n < evidence.min_samples, when both sides tie (|A - B| <= 1e-12, at zero or anywhere: the run
  did not exercise what the claim is about), or when D's interval includes the claim's margin;
- otherwise holds when the interval lies on the claim's side of the margin, fails when on the other.

A claim fails when any comparison fails, holds when one or more hold and none fails, and is
inconclusive otherwise. The m comparisons of a claim that reach the interval test use intervals at
confidence 1 - (1 - confidence) / m (Bonferroni), so that all m cover at once with at least the
profile's confidence and the verdict does not rest on one lucky interval among many.

Quality is consistency with `full` (share of identical outputs), the study's measure of what an
exit costs; savings are TOTAL FLOPs savings (the prompt's forward and a stateful classifier's pass
over the prompt included). The claims, their difference and margin:

1. Mamba classifiers beat CALM and FFN at equal quality: D = savings of the best mamba cell at
   consistency >= CONSISTENCY_TARGET - the same for the better of calm and ffn (a kind with no such
   cell saves 0: `full` itself); holds when D > 0.
2. Early exit beats static pruning: per pruning level, D = consistency of the best EE cell that
   saves at least as much - the pruning level's consistency; holds when D > 0.
3. Copying KV to skipped layers costs little against a partial forward: D = mean consistency of
   partial - that of copy over the kinds and thresholds run under both; holds when D < COPY_MARGIN.
4. Low thresholds cause repetition: D = loop rate at the lowest threshold (mean over kinds and
   policies) - the larger of the loop rate at the highest threshold and full's; holds when D > 0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dynamax_bench.reporting.statistics import (
    IntervalSettings,
    Statistic,
    Take,
    estimate,
    estimate_of,
    observed,
    paired_n,
    ratio_of,
)
from dynamax_bench.spec import method_of

CONSISTENCY_TARGET = 0.99  # "no loss": the share of outputs identical to full's
COPY_MARGIN = 0.05  # "costs little": at most this much consistency lost against partial
TIE = 1e-12


@dataclass(frozen=True)
class Claim:
    """A claim of the paper and how a comparison's difference D decides it."""

    key: str
    claim: str
    test: str
    margin: float
    direction: str  # greater: holds when D > margin; less: holds when D < margin


@dataclass
class Comparison:
    """Two sides of one claim on one backbone and task; `reason` set: it could not be formed."""

    where: str
    a_label: str
    b_label: str
    cells: list[dict] = field(default_factory=list)
    a: Statistic | None = None
    b: Statistic | None = None
    reason: str = ""


CLAIMS = {
    "mamba": Claim("mamba", "Mamba classifiers beat CALM and FFN classifiers at equal quality",
                   f"total savings at consistency >= {CONSISTENCY_TARGET} (best over thresholds and policies): "
                   f"mamba - max(calm, ffn) > 0", 0.0, "greater"),
    "pruning": Claim("pruning", "Early exit beats static layer pruning",
                     "at each pruning level, consistency of the best EE cell saving at least as much - "
                     "the level's consistency > 0", 0.0, "greater"),
    "copy": Claim("copy", "Copying KV to skipped layers costs little quality against a partial forward",
                  f"mean consistency partial - copy over matching kinds and thresholds < {COPY_MARGIN}", COPY_MARGIN,
                  "less"),
    "repetition": Claim("repetition", "Low thresholds cause repetition",
                        "loop rate at the lowest threshold (mean over kinds and policies) - max(loop rate at the "
                        "highest threshold, full's) > 0", 0.0, "greater"),
}


def group(cells: list[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for cell in cells:
        out[(cell["backbone"], cell["task"])].append(cell)
    return out


def ee_cells(cells: list[dict], kind: str | None = None, policy: str | None = None) -> list[dict]:
    picked = []
    for cell in cells:
        m = method_of(cell)
        if m.kind == "ee" and (kind is None or m.exit_kind == kind) and (policy is None or m.policy == policy):
            picked.append(cell)
    return picked


def total_savings(cell: dict) -> float:
    return estimate_of(cell, "flops.total_savings")["value"]


def side(cells: list[dict], quantity: str, combine: Callable[..., np.ndarray]) -> Statistic:
    """A side that combines one quantity of several cells (np.max, np.mean over cells) per resample."""
    ratios = [ratio_of(c, quantity) for c in cells]
    return lambda take: combine(np.stack([take(r) for r in ratios]), axis=0)


def best_savings_at_target(cells: list[dict]) -> Statistic:
    """Largest total savings among cells at consistency >= the target, 0 when none reaches it."""
    pairs = [(ratio_of(c, "flops.total_savings"), ratio_of(c, "consistency.output_match")) for c in cells]

    def statistic(take: Take) -> np.ndarray:
        at_target = [np.where(take(cons) >= CONSISTENCY_TARGET - TIE, take(sav), 0.0) for sav, cons in pairs]
        return np.maximum(np.max(np.stack(at_target), axis=0), 0.0)

    return statistic


def larger(a: Statistic, b: Statistic) -> Statistic:
    return lambda take: np.maximum(a(take), b(take))


def mamba_comparisons(cells: list[dict]) -> list[Comparison]:
    out = []
    for (backbone, task), pair in sorted(group(cells).items()):
        kinds = {k: ee_cells(pair, k) for k in ("mamba", "calm", "ffn")}
        if not all(kinds.values()):
            continue
        out.append(Comparison(
            f"{backbone}/{task}", "mamba", "max(calm, ffn)", [c for k in kinds.values() for c in k],
            best_savings_at_target(kinds["mamba"]),
            larger(best_savings_at_target(kinds["calm"]), best_savings_at_target(kinds["ffn"]))))
    return out


def pruning_comparisons(cells: list[dict]) -> list[Comparison]:
    out = []
    for (backbone, task), pair in sorted(group(cells).items()):
        early = ee_cells(pair)
        levels = sorted((c for c in pair if method_of(c).kind == "prune" and method_of(c).prune > 0),
                        key=lambda c: method_of(c).prune)
        for prune in levels if early else []:
            target = total_savings(prune)
            eligible = [c for c in early if total_savings(c) >= target - 1e-9]
            where = f"{backbone}/{task} {prune['method']}"
            b_label = f"{prune['method']} (savings {target:.3f})"
            if not eligible:
                out.append(Comparison(where, "best EE", b_label,
                                      reason=f"no EE cell saves {target:.3f} or more (a lower threshold would)"))
                continue
            out.append(Comparison(where, f"best of {len(eligible)} EE cells saving as much", b_label,
                                  [*eligible, prune], side(eligible, "consistency.output_match", np.max),
                                  side([prune], "consistency.output_match", np.max)))
    return out


def copy_comparisons(cells: list[dict]) -> list[Comparison]:
    out = []
    for (backbone, task), pair in sorted(group(cells).items()):
        key = lambda c: (method_of(c).exit_kind, method_of(c).threshold)  # noqa: E731
        copy = {key(c): c for c in ee_cells(pair, policy="copy")}
        partial = {key(c): c for c in ee_cells(pair, policy="partial")}
        matched = sorted(set(copy) & set(partial))
        if not matched:
            continue
        a_cells, b_cells = [partial[k] for k in matched], [copy[k] for k in matched]
        out.append(Comparison(f"{backbone}/{task}", f"partial ({len(matched)} kind/threshold)", "copy",
                              a_cells + b_cells, side(a_cells, "consistency.output_match", np.mean),
                              side(b_cells, "consistency.output_match", np.mean)))
    return out


def repetition_comparisons(cells: list[dict]) -> list[Comparison]:
    out = []
    for (backbone, task), pair in sorted(group(cells).items()):
        full = [c for c in pair if method_of(c).kind == "full"]
        early = ee_cells(pair)
        if not full or not early:
            continue
        thresholds = sorted({method_of(c).threshold for c in early})
        low, high = thresholds[0], thresholds[-1]
        where = f"{backbone}/{task}"
        if low == high:
            out.append(Comparison(where, f"EE at t={low:g}", "full", reason="one threshold: no low against high"))
            continue
        at_low = [c for c in early if method_of(c).threshold == low]
        at_high = [c for c in early if method_of(c).threshold == high]
        out.append(Comparison(where, f"EE at t={low:g}", f"max(EE at t={high:g}, full)", at_low + at_high + full,
                              side(at_low, "degeneration.loop_rate", np.mean),
                              larger(side(at_high, "degeneration.loop_rate", np.mean),
                                     side(full, "degeneration.loop_rate", np.max))))
    return out


@dataclass(frozen=True)
class Outcome:
    """One comparison's numbers and verdict (a row of the detail CSV)."""

    claim: str
    comparison: str
    a: str
    a_value: float | None
    b: str
    b_value: float | None
    difference: float | None
    lo: float | None
    hi: float | None
    confidence: float | None
    n: int | None
    verdict: str
    reason: str

    def line(self) -> str:
        if self.difference is None:
            return f"{self.comparison}: {self.verdict} ({self.reason})"
        why = f" ({self.reason})" if self.reason else ""
        return (f"{self.comparison}: {self.a} {self.a_value:.3f} vs {self.b} {self.b_value:.3f}, "
                f"D {self.difference:+.3f} [{self.lo:+.3f}, {self.hi:+.3f}] n={self.n}: {self.verdict}{why}")


def decide(claim: Claim, lo: float, hi: float) -> tuple[str, str]:
    """The interval test against the claim's margin."""
    if lo <= claim.margin <= hi:
        return "inconclusive", f"interval includes the margin {claim.margin:g}"
    above = lo > claim.margin
    return ("holds" if above == (claim.direction == "greater") else "fails"), ""


def judge(claim: Claim, comparisons: list[Comparison], settings: IntervalSettings, min_samples: int) -> list[Outcome]:
    """Every comparison of a claim, its intervals Bonferroni-adjusted over those that reach the test."""
    prepared = []
    for comp in comparisons:
        if comp.reason:
            prepared.append((comp, None, None, None, comp.reason))
            continue
        n = paired_n(comp.cells)
        a, b = float(comp.a(observed)[0]), float(comp.b(observed)[0])
        reason = (f"n = {n} < min_samples {min_samples}" if n < min_samples
                  else f"tie: both sides {a:.3f}" if abs(a - b) <= TIE else "")
        prepared.append((comp, n, a, b, reason))
    tested = sum(1 for p in prepared if p[1] is not None and not p[4])
    confidence = 1.0 - (1.0 - settings.confidence) / max(tested, 1)
    outcomes = []
    for comp, n, a, b, reason in prepared:
        if n is None:
            outcomes.append(Outcome(claim.key, comp.where, comp.a_label, None, comp.b_label, None, None, None, None,
                                    None, None, "inconclusive", reason))
            continue
        diff = estimate(lambda take, c=comp: c.a(take) - c.b(take), n, settings, confidence)
        verdict, test_reason = ("inconclusive", reason) if reason else decide(claim, diff.lo, diff.hi)
        outcomes.append(Outcome(claim.key, comp.where, comp.a_label, a, comp.b_label, b, diff.value, diff.lo,
                                diff.hi, confidence, n, verdict, test_reason))
    return outcomes


def verdict(outcomes: list[Outcome]) -> str:
    found = {o.verdict for o in outcomes}
    return "fails" if "fails" in found else "holds" if "holds" in found else "inconclusive"


def tally(outcomes: list[Outcome]) -> str:
    counts = {v: sum(o.verdict == v for o in outcomes) for v in ("holds", "fails", "inconclusive")}
    return ", ".join(f"{count} {v}" for v, count in counts.items()) + f" (of {len(outcomes)})"


COMPARISONS: dict[str, Callable[[list[dict]], list[Comparison]]] = {
    "mamba": mamba_comparisons,
    "pruning": pruning_comparisons,
    "copy": copy_comparisons,
    "repetition": repetition_comparisons,
}


def claims_scorecard(cells: list[dict], evidence: dict) -> tuple[list[dict], list[Outcome]]:
    """One row per claim (verdict, tally, the numbers of every comparison) and every comparison's
    outcome. evidence: the profile's `evidence` section."""
    settings = IntervalSettings.from_dict(evidence)
    rows, details = [], []
    for key, claim in CLAIMS.items():
        outcomes = judge(claim, COMPARISONS[key](cells), settings, evidence["min_samples"])
        details += outcomes
        rows.append({"claim": claim.claim, "test": claim.test, "verdict": verdict(outcomes),
                     "comparisons": tally(outcomes),
                     "numbers": "; ".join(o.line() for o in outcomes) or "no backbone/task has the cells it compares"})
    return rows, details
