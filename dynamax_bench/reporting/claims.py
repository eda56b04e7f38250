"""Table 6: each claim of the paper, decided on this run's cells, per backbone.

A claim is checked by comparisons (one per backbone, task and, where it has one, target or pruning
level). Each compares two sides A and B over the same samples (their sample ids must be equal)
through the paired difference D = A - B and its bootstrap distribution (statistics.py: whole groups
resampled, e.g. the turns of a CoQA story together). A side may pick the best of several cells: the
pick is made again inside every resample, so the interval carries the selection too.

Every claim states in advance a practical margin m on its quantity (the profile's
`evidence.margins`). A superiority claim ("A beats B") has three regions for D: above +m (holds),
below -m (fails), within [-m, m] (equivalent: a difference too small to matter). A non-inferiority
claim ("A costs little against B") has two: below m (holds) and above m (fails). A comparison is
decided when D's interval lies entirely inside one region; the interval straddling a region's edge
is inconclusive.

Multiplicity: every comparison of the scorecard that reaches the test is one hypothesis of one
family. Its p-value is the smallest alpha at which the two-sided percentile interval at 1 - alpha lies
inside one region (twice the share of resamples on the wrong side of that region's edge). Holm's
step-down over the family (alpha = 1 - evidence.confidence) decides the comparisons in order of
p-value while p <= alpha / (tested - rank); the interval printed is at that comparison's Holm level.

A comparison reaches the test only when it can be formed and means something:
- not competent: the backbone's `full` cell on the task scores below the profile's floor on the
  task's metric, or loops on more samples than its ceiling (`evidence.competence`): its outputs carry
  no signal a claim about quality could rest on;
- cannot be formed: a side has no cells in the run (the reason is named, e.g. one threshold only,
  no early-exit cell reached the pruning level's savings);
- n < evidence.min_samples;
- not exercised: both sides are the same number in every resample (e.g. no kind could be certified
  at a target, so every side runs as the full model).
All of these read "inconclusive" (or "not competent") with the reason, never a verdict.

Per backbone, a claim reads from its decided comparisons: holds / fails / equivalent when they all
agree, "mixed (...)" otherwise, and inconclusive (or not competent) when none is decided.

Quantities: decode savings (the generated tokens after the first, the exit method's decisions and
fills included: where an exit method acts) compare methods; consistency with `full` (the share of
outputs identical to the full model's) is the quality an exit costs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dynamax_bench.reporting.statistics import (
    IntervalSettings,
    Statistic,
    estimate_of,
    observed,
    paired_groups,
    ratio_of,
    resampled,
)
from dynamax_bench.spec import MethodSpec, format_threshold, method_of

TIE = 1e-12
SAVINGS = "flops.decode_savings"
CONSISTENCY = "consistency.output_match"
LOOPS = "degeneration.loop_rate"
TRAINED = ("calm", "ffn", "mamba")


@dataclass(frozen=True)
class Evidence:
    """The claims' settings (the profile's `evidence` section)."""

    confidence: float
    resamples: int
    seed: int
    min_samples: int
    margins: dict[str, float]  # decode_savings, consistency, loop_rate
    competence: dict  # {"metric": {task: name}, "floor": {task: value}, "max_loop_rate": value}

    @classmethod
    def from_dict(cls, data: dict) -> Evidence:
        return cls(confidence=data["confidence"], resamples=data.get("claim_resamples", data["resamples"]),
                   seed=data["seed"], min_samples=data["min_samples"], margins=data["margins"],
                   competence=data["competence"])

    @property
    def settings(self) -> IntervalSettings:
        return IntervalSettings(self.confidence, self.resamples, self.seed)


@dataclass(frozen=True)
class Claim:
    """A claim of the paper: what D measures, its margin, and its regions."""

    key: str
    claim: str
    test: str
    margin: str  # key of evidence.margins
    form: str  # superiority: holds above +m, fails below -m, equivalent within; noninferiority: holds below m


CLAIMS = {
    "mamba": Claim("mamba", "Mamba classifiers beat CALM and FFN classifiers at equal quality",
                   "decode savings at each calibrated consistency target: mamba - max(calm, ffn)", "decode_savings",
                   "superiority"),
    "pruning": Claim("pruning", "Early exit beats static layer pruning",
                     "consistency with full at each pruning level's decode savings: best early-exit cell calibrated to "
                     "save as much - the pruning level", "consistency", "superiority"),
    "copy": Claim("copy", "Copying KV to skipped layers costs little quality against a partial forward",
                  "mean consistency partial - copy over matching kinds and thresholds below the margin", "consistency",
                  "noninferiority"),
    "repetition": Claim("repetition", "Low thresholds cause repetition",
                        "loop rate at the lowest threshold (mean over kinds and policies) - max(loop rate at the highest "
                        "threshold, full's)", "loop_rate", "superiority"),
    "prompt_state": Claim("prompt_state", "The mamba classifier's state over the prompt buys savings (ablation)",
                          "decode savings at each calibrated consistency target: mamba (state built over the prompt) - "
                          "mamba with its state started at the first generated token", "decode_savings", "superiority"),
    "lossless": Claim("lossless", "Lossless self-speculative decoding saves more than the paper's lossy early exits at "
                      "equal quality (the suite's question, not the paper's)",
                      "decode savings at each calibrated consistency target: best spec-e<E>-k<K> (consistency 1 by "
                      "construction) - max(calm, ffn, mamba) calibrated to the target", "decode_savings", "superiority"),
}


@dataclass
class Comparison:
    """Two sides of one claim on one backbone and task; `reason` set: it could not be formed."""

    claim: str
    backbone: str
    task: str
    where: str
    a_label: str
    b_label: str
    cells: list[dict] = field(default_factory=list)
    a: Statistic | None = None
    b: Statistic | None = None
    reason: str = ""


def group(cells: list[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for cell in cells:
        out[(cell["backbone"], cell["task"])].append(cell)
    return out


def ee_cells(cells: list[dict], kind: str | None = None, policy: str | None = None, fixed: bool | None = None) -> list[dict]:
    """Early-exit cells, by exit kind, policy, and fixed (a typed-in threshold) or calibrated."""
    picked = []
    for cell in cells:
        m = method_of(cell)
        if (m.kind == "ee" and (kind is None or m.exit_kind == kind) and (policy is None or m.policy == policy)
                and (fixed is None or fixed != m.calibrated)):
            picked.append(cell)
    return picked


def calibrated(cells: list[dict], target: str) -> dict[tuple[str, str, float], dict]:
    """(exit kind, policy, target value) -> cell, for the calibrated cells of one target kind."""
    return {(m.exit_kind, m.policy, m.target_value): c for c in cells
            for m in [method_of(c)] if m.kind == "ee" and m.target == target}


def side(cells: list[dict], quantity: str, combine: Callable[..., np.ndarray]) -> Statistic:
    """A side that combines one quantity of several cells (np.max, np.mean over cells) per resample."""
    ratios = [ratio_of(c, quantity) for c in cells]
    return lambda take: combine(np.stack([take(r) for r in ratios]), axis=0)


def larger(a: Statistic, b: Statistic) -> Statistic:
    return lambda take: np.maximum(a(take), b(take))


def target_label(m: MethodSpec) -> str:
    return f"c{format_threshold(m.target_value)}"


def certification(cell: dict) -> str:
    m = method_of(cell)
    if not m.certified:
        return "not certified: runs as full"
    return f"t={m.threshold:g}"


def mamba_comparisons(cells: list[dict]) -> list[Comparison]:
    out = []
    for (backbone, task), pair in sorted(group(cells).items()):
        found = calibrated(pair, "consistency")
        for (kind, policy, value), mamba in sorted(found.items()):
            if kind != "mamba":
                continue
            where = f"{backbone}/{task} {policy} c{format_threshold(value)}"
            others = [found[(k, policy, value)] for k in ("calm", "ffn") if (k, policy, value) in found]
            if not others:
                out.append(Comparison("mamba", backbone, task, where, "mamba", "max(calm, ffn)",
                                      reason="no calm or ffn cell calibrated to this target"))
                continue
            labels = ", ".join(f"{method_of(c).exit_kind} {certification(c)}" for c in [mamba, *others])
            out.append(Comparison("mamba", backbone, task, where, "mamba", f"max(calm, ffn) [{labels}]",
                                  [mamba, *others], side([mamba], SAVINGS, np.max), side(others, SAVINGS, np.max)))
    return out


def prompt_state_comparisons(cells: list[dict]) -> list[Comparison]:
    out = []
    for (backbone, task), pair in sorted(group(cells).items()):
        found = calibrated(pair, "consistency")
        for (kind, policy, value), fresh in sorted(found.items()):
            if kind != "mamba_fresh" or ("mamba", policy, value) not in found:
                continue
            mamba = found[("mamba", policy, value)]
            out.append(Comparison("prompt_state", backbone, task, f"{backbone}/{task} {policy} c{format_threshold(value)}",
                                  f"mamba ({certification(mamba)})", f"mamba_fresh ({certification(fresh)})",
                                  [mamba, fresh], side([mamba], SAVINGS, np.max), side([fresh], SAVINGS, np.max)))
    return out


def lossless_comparisons(cells: list[dict]) -> list[Comparison]:
    """Per consistency target, the spec-* cells (equal to full: score.check_lossless) against the paper's
    lossy kinds calibrated to it, both policies; a lossless method meets every target, so it competes
    with the best lossy cell at each."""
    out = []
    for (backbone, task), pair in sorted(group(cells).items()):
        spec = [c for c in pair if method_of(c).kind == "spec"]
        if not spec:
            continue
        found = calibrated(pair, "consistency")
        spec_label = f"max({', '.join(c['method'] for c in spec)})"
        for value in sorted({value for (kind, _, value) in found if kind in TRAINED}):
            lossy = [c for (kind, _, v), c in sorted(found.items()) if kind in TRAINED and v == value]
            labels = ", ".join(f"{method_of(c).exit_kind}-{method_of(c).policy} {certification(c)}" for c in lossy)
            out.append(Comparison("lossless", backbone, task, f"{backbone}/{task} c{format_threshold(value)}",
                                  spec_label, f"max(calm, ffn, mamba) [{labels}]", [*spec, *lossy],
                                  side(spec, SAVINGS, np.max), side(lossy, SAVINGS, np.max)))
    return out


def pruning_comparisons(cells: list[dict], margin: float) -> list[Comparison]:
    """Per pruning level, the EE cells calibrated to its decode savings that reach them on the evaluated
    samples (within the savings margin); the best of them by consistency, picked in every resample."""
    out = []
    for (backbone, task), pair in sorted(group(cells).items()):
        found = calibrated(pair, "prune")
        levels = sorted((c for c in pair if method_of(c).kind == "prune" and method_of(c).prune > 0),
                        key=lambda c: method_of(c).prune)
        for prune in levels:
            level = method_of(prune).prune
            target = estimate_of(prune, SAVINGS)["value"]
            matched = [c for (_, _, value), c in sorted(found.items()) if int(value) == level]
            where = f"{backbone}/{task} {prune['method']}"
            b_label = f"{prune['method']} (decode savings {target:.3f})"
            if not matched:
                out.append(Comparison("pruning", backbone, task, where, "best EE", b_label,
                                      reason=f"no early-exit cell calibrated to the savings of {prune['method']}"))
                continue
            eligible = [c for c in matched if estimate_of(c, SAVINGS)["value"] >= target - margin]
            if not eligible:
                best = max(matched, key=lambda c: estimate_of(c, SAVINGS)["value"])
                out.append(Comparison("pruning", backbone, task, where, "best EE", b_label, reason=(
                    f"no early-exit cell reached its decode savings on the evaluated samples (best: {best['method']} "
                    f"{estimate_of(best, SAVINGS)['value']:.3f}; the most it can save is bounded by its first exit "
                    f"and classifier cost)")))
                continue
            names = ", ".join(method_of(c).exit_kind for c in eligible)
            out.append(Comparison("pruning", backbone, task, where, f"best of {len(eligible)} EE ({names})", b_label,
                                  [*eligible, prune], side(eligible, CONSISTENCY, np.max),
                                  side([prune], CONSISTENCY, np.max)))
    return out


def copy_comparisons(cells: list[dict]) -> list[Comparison]:
    out = []
    for (backbone, task), pair in sorted(group(cells).items()):
        key = lambda c: (method_of(c).exit_kind, method_of(c).threshold)  # noqa: E731
        copy = {key(c): c for c in ee_cells(pair, policy="copy", fixed=True)}
        partial = {key(c): c for c in ee_cells(pair, policy="partial", fixed=True)}
        matched = sorted(set(copy) & set(partial))
        if not matched:
            continue
        a_cells, b_cells = [partial[k] for k in matched], [copy[k] for k in matched]
        out.append(Comparison("copy", backbone, task, f"{backbone}/{task}", f"partial ({len(matched)} kind/threshold)",
                              "copy", a_cells + b_cells, side(a_cells, CONSISTENCY, np.mean),
                              side(b_cells, CONSISTENCY, np.mean)))
    return out


def repetition_comparisons(cells: list[dict]) -> list[Comparison]:
    out = []
    for (backbone, task), pair in sorted(group(cells).items()):
        full = [c for c in pair if method_of(c).kind == "full"]
        early = ee_cells(pair, fixed=True)
        if not full or not early:
            continue
        thresholds = sorted({method_of(c).threshold for c in early})
        low, high = thresholds[0], thresholds[-1]
        where = f"{backbone}/{task}"
        if low == high:
            out.append(Comparison("repetition", backbone, task, where, f"EE at t={low:g}", "full",
                                  reason="one fixed threshold: no low against high"))
            continue
        at_low = [c for c in early if method_of(c).threshold == low]
        at_high = [c for c in early if method_of(c).threshold == high]
        out.append(Comparison("repetition", backbone, task, where, f"EE at t={low:g}", f"max(EE at t={high:g}, full)",
                              at_low + at_high + full, side(at_low, LOOPS, np.mean),
                              larger(side(at_high, LOOPS, np.mean), side(full, LOOPS, np.max))))
    return out


def competence(cells: list[dict], evidence: Evidence) -> dict[tuple[str, str], str]:
    """(backbone, task) -> "" when the full model is competent there, else why not."""
    rules, out = evidence.competence, {}
    for (backbone, task), pair in group(cells).items():
        full = [c for c in pair if method_of(c).kind == "full"]
        if not full:
            out[(backbone, task)] = "no full cell to judge competence by"
            continue
        metric, floor = rules["metric"].get(task), rules["floor"].get(task)
        problems = []
        if metric is not None:
            value = full[0]["metrics"][metric]
            if value < floor:
                problems.append(f"full {metric} {value:.3f} < floor {floor:g}")
        loops = full[0]["degeneration"]["loop_rate"]
        if loops > rules["max_loop_rate"]:
            problems.append(f"full loops on {loops:.3f} of samples > {rules['max_loop_rate']:g}")
        out[(backbone, task)] = "; ".join(problems)
    return out


@dataclass(frozen=True)
class Outcome:
    """One comparison's numbers and verdict (a row of the detail table)."""

    claim: str
    backbone: str
    task: str
    comparison: str
    a: str
    a_value: float | None
    b: str
    b_value: float | None
    difference: float | None
    lo: float | None
    hi: float | None
    margin: float
    p_value: float | None
    level: float | None  # the Holm level the comparison was tested at (1 - its adjusted alpha)
    n: int | None
    groups: int | None
    verdict: str
    reason: str
    ceiling: float | None = None  # the oracle's decode savings on this backbone and task, where D is savings

    @property
    def decided(self) -> bool:
        return self.verdict in ("holds", "fails", "equivalent")

    def line(self) -> str:
        if self.difference is None:
            return f"{self.comparison}: {self.verdict} ({self.reason})"
        why = f" ({self.reason})" if self.reason else ""
        return (f"{self.comparison}: D {self.difference:+.3f} [{self.lo:+.3f}, {self.hi:+.3f}] n={self.n}, "
                f"p={self.p_value:.2g}: {self.verdict}{why}")


def regions(claim: Claim, margin: float) -> dict[str, tuple[float, float]]:
    if claim.form == "superiority":
        return {"holds": (margin, np.inf), "fails": (-np.inf, -margin), "equivalent": (-margin, margin)}
    return {"holds": (-np.inf, margin), "fails": (margin, np.inf)}


def region_p_values(draws: np.ndarray, bounds: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Per region, the smallest alpha at which the percentile interval at 1 - alpha lies inside it: twice
    the larger share of resamples beyond one of its edges (capped at 1)."""
    out = {}
    for name, (lo, hi) in bounds.items():
        below = float(np.mean(draws < lo)) if np.isfinite(lo) else 0.0
        above = float(np.mean(draws > hi)) if np.isfinite(hi) else 0.0
        out[name] = min(1.0, 2.0 * max(below, above))
    return out


@dataclass
class Prepared:
    comparison: Comparison
    reason: str = ""
    verdict: str = "inconclusive"
    n: int | None = None
    groups: int | None = None
    a: float | None = None
    b: float | None = None
    draws: np.ndarray | None = None
    region: str = ""
    p: float = 1.0


def prepare(comp: Comparison, claim: Claim, margin: float, evidence: Evidence,
            competent: dict[tuple[str, str], str]) -> Prepared:
    """Everything a comparison needs before the family's Holm step: its reason not to be tested, or its
    bootstrap distribution of D and its best region's p-value."""
    if comp.reason:
        return Prepared(comp, comp.reason)
    if competent.get((comp.backbone, comp.task)):
        return Prepared(comp, f"backbone not competent on {comp.task}: {competent[(comp.backbone, comp.task)]}",
                        verdict="not competent")
    groups = paired_groups(comp.cells)
    a, b = float(comp.a(observed)[0]), float(comp.b(observed)[0])
    out = Prepared(comp, n=groups.samples, groups=groups.count, a=a, b=b)
    if groups.samples < evidence.min_samples:
        out.reason = f"n = {groups.samples} < min_samples {evidence.min_samples}"
        return out
    out.draws = resampled([lambda take: comp.a(take) - comp.b(take)], groups, evidence.settings)[0]
    if abs(a - b) <= TIE and np.all(np.abs(out.draws) <= TIE):
        out.reason = f"not exercised: both sides {a:.3f} in every resample"
        out.draws = None
        return out
    p_values = region_p_values(out.draws, regions(claim, margin))
    # regions share their edges: D exactly on +-m in every resample is inside the margin, "equivalent"
    out.region = min(p_values, key=lambda region: (p_values[region], region != "equivalent"))
    out.p = p_values[out.region]
    return out


def holm(prepared: list[Prepared], alpha: float) -> dict[int, float]:
    """Holm's step-down over the tested comparisons: decided in order of p-value while p <= alpha / (tested -
    rank); the first that is not stops it. Returns each tested comparison's alpha level, by index."""
    tested = sorted((p.p, i) for i, p in enumerate(prepared) if p.draws is not None)
    levels, going = {}, True
    for rank, (p, i) in enumerate(tested):
        level = alpha / (len(tested) - rank)
        levels[i] = level
        going = going and p <= level
        if going:
            prepared[i].verdict = prepared[i].region
        elif p > level:
            prepared[i].reason = f"interval at its Holm level crosses a margin edge (p = {p:.2g} > {level:.2g})"
        else:
            prepared[i].reason = f"Holm stopped at a smaller p-value before it (p = {p:.2g})"
    return levels


def oracle_ceilings(cells: list[dict]) -> dict[tuple[str, str], float]:
    """(backbone, task) -> the oracle's decode savings (every token at the first exit that agrees with
    full): what no exit rule at consistency 1 can beat, shown beside each savings comparison."""
    out = {}
    for cell in cells:
        estimate = cell.get("intervals", {}).get("estimates", {}).get(SAVINGS)
        if method_of(cell).kind == "oracle" and estimate:
            out[(cell["backbone"], cell["task"])] = estimate["value"]
    return out


def scorecard(cells: list[dict], evidence: Evidence, extra: list[Comparison] = ()) -> list[Outcome]:
    """Every comparison of every claim, decided together (one Holm family)."""
    competent = competence(cells, evidence)
    ceilings = oracle_ceilings(cells)
    comparisons = (mamba_comparisons(cells) + pruning_comparisons(cells, evidence.margins["decode_savings"])
                   + copy_comparisons(cells) + repetition_comparisons(cells) + prompt_state_comparisons(cells)
                   + lossless_comparisons(cells) + list(extra))
    prepared = [prepare(c, CLAIMS[c.claim], evidence.margins[CLAIMS[c.claim].margin], evidence, competent)
                for c in comparisons]
    alpha = 1.0 - evidence.confidence
    levels = holm(prepared, alpha)
    outcomes = []
    for i, p in enumerate(prepared):
        comp, claim = p.comparison, CLAIMS[p.comparison.claim]
        margin = evidence.margins[claim.margin]
        lo = hi = diff = None
        if p.draws is not None:
            level = levels[i]
            finite = p.draws[np.isfinite(p.draws)]
            lo, hi = (float(v) for v in np.quantile(finite, [level / 2, 1.0 - level / 2]))
            diff = p.a - p.b
        outcomes.append(Outcome(
            claim.key, comp.backbone, comp.task, comp.where, comp.a_label, p.a, comp.b_label, p.b, diff, lo, hi,
            margin, p.p if p.draws is not None else None, 1.0 - levels[i] if i in levels else None, p.n, p.groups,
            p.verdict, p.reason,
            ceilings.get((comp.backbone, comp.task)) if claim.margin == "decode_savings" else None))
    return outcomes


def backbone_verdict(outcomes: list[Outcome]) -> str:
    """A claim on one backbone, from its comparisons' verdicts."""
    decided = [o.verdict for o in outcomes if o.decided]
    if not decided:
        if outcomes and all(o.verdict == "not competent" for o in outcomes):
            return "not competent"
        return "inconclusive"
    kinds = sorted(set(decided))
    if len(kinds) == 1:
        return kinds[0]
    return "mixed (" + ", ".join(f"{decided.count(k)} {k}" for k in kinds) + ")"


def tally(outcomes: list[Outcome]) -> str:
    names = ("holds", "fails", "equivalent", "inconclusive", "not competent")
    counts = {v: sum(o.verdict == v for o in outcomes) for v in names}
    return ", ".join(f"{count} {v}" for v, count in counts.items() if count) + f" (of {len(outcomes)})"


def claims_scorecard(cells: list[dict], evidence: dict, extra: list[Comparison] = ()) -> tuple[list[dict], list[Outcome]]:
    """One row per claim and backbone (verdict, tally, margin) and every comparison's outcome."""
    settings = Evidence.from_dict(evidence)
    outcomes = scorecard(cells, settings, extra)
    rows = []
    for key, claim in CLAIMS.items():
        mine = [o for o in outcomes if o.claim == key]
        for backbone in sorted({o.backbone for o in mine}):
            here = [o for o in mine if o.backbone == backbone]
            rows.append({"claim": claim.claim, "backbone": backbone, "test": claim.test,
                         "margin": f"{claim.form}, m = {settings.margins[claim.margin]:g}",
                         "verdict": backbone_verdict(here), "comparisons": tally(here)})
    return rows, outcomes


def counts(outcomes: list[Outcome]) -> dict[str, int]:
    """The scorecard's totals: comparisons, decided ones and each verdict."""
    out = {"comparisons": len(outcomes), "decided": sum(o.decided for o in outcomes)}
    for verdict in ("holds", "fails", "equivalent", "inconclusive", "not competent"):
        out[verdict] = sum(o.verdict == verdict for o in outcomes)
    return out
