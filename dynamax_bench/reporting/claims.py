"""Table 6: each claim of the paper, checked on this run's cells (holds / fails, with the numbers).

Quality is consistency with `full` (share of identical outputs), the study's measure of what an
exit costs; savings are the FLOPs savings of the cell (classifier overhead included). A claim is
checked per backbone and task, and holds when it holds on every pair where it can be checked. A pair
that cannot tell (no classifier saves anything at the quality target, no EE cell saves as much as
a pruning level, both at zero consistency, a sweep of one threshold) is listed with the reason and not counted, so that a
tie at zero never reads as "holds".
"""

from __future__ import annotations

from collections import defaultdict
from statistics import fmean

from dynamax_bench.spec import method_of

CONSISTENCY_TARGET = 0.99  # "no loss": the share of outputs identical to full's
DEGENERATION_MARGIN = 0.0


def savings_at(cells: list[dict], target: float = CONSISTENCY_TARGET) -> float:
    """Largest savings among cells at or above the consistency target (0.0: `full` itself)."""
    return max([0.0] + [c["flops"]["savings"] for c in cells if c["consistency"]["output_match"] >= target])


def best_consistency_at(cells: list[dict], savings: float) -> float | None:
    """Best consistency among cells that save at least `savings` (None: no cell saves that much)."""
    eligible = [c["consistency"]["output_match"] for c in cells if c["flops"]["savings"] >= savings - 1e-9]
    return max(eligible) if eligible else None


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


def claim_mamba_beats_calm_and_ffn(cells: list[dict]) -> dict:
    checked, held, numbers = 0, 0, []
    for (backbone, task), group_cells in sorted(group(cells).items()):
        s = {k: savings_at(ee_cells(group_cells, k)) for k in ("mamba", "calm", "ffn") if ee_cells(group_cells, k)}
        if len(s) < 3:
            continue
        line = f"{backbone}/{task}: " + ", ".join(f"{k} {v:.3f}" for k, v in s.items())
        if max(s.values()) <= 0.0:
            numbers.append(f"{line} (no kind saves at this quality: not counted)")
            continue
        checked += 1
        held += s["mamba"] >= max(s["calm"], s["ffn"])
        numbers.append(line)
    return verdict(
        "Mamba classifiers beat CALM and FFN classifiers at equal quality",
        f"savings at consistency >= {CONSISTENCY_TARGET} (best over thresholds and policies): mamba >= max(calm, ffn)",
        checked, held, numbers,
    )


def claim_ee_beats_pruning(cells: list[dict]) -> dict:
    checked, held, numbers = 0, 0, []
    for (backbone, task), group_cells in sorted(group(cells).items()):
        early = ee_cells(group_cells)
        for prune in (c for c in group_cells if method_of(c).kind == "prune"):
            if method_of(prune).prune == 0 or not early:
                continue
            best = best_consistency_at(early, prune["flops"]["savings"])
            line = (f"{backbone}/{task} {prune['method']} (savings {prune['flops']['savings']:.3f}): "
                    f"consistency {prune['consistency']['output_match']:.3f} vs best EE ")
            if best is None:
                numbers.append(line + "none saves as much (lower thresholds would: not counted)")
                continue
            if best == prune["consistency"]["output_match"] == 0.0:
                numbers.append(line + "0.000 (neither reproduces full: not counted)")
                continue
            checked += 1
            held += best >= prune["consistency"]["output_match"]
            numbers.append(line + f"{best:.3f}")
    return verdict(
        "Early exit beats static layer pruning",
        "at each pruning level's savings, the best EE cell saving at least as much is at least as consistent",
        checked, held, numbers,
    )


def claim_copy_costs_little(cells: list[dict], tolerance: float = 0.05) -> dict:
    checked, held, numbers = 0, 0, []
    for (backbone, task), group_cells in sorted(group(cells).items()):
        copy = {(method_of(c).exit_kind, method_of(c).threshold): c for c in ee_cells(group_cells, policy="copy")}
        partial = {(method_of(c).exit_kind, method_of(c).threshold): c for c in ee_cells(group_cells, policy="partial")}
        gaps = [partial[k]["consistency"]["output_match"] - copy[k]["consistency"]["output_match"]
                for k in sorted(set(copy) & set(partial))]
        if not gaps:
            continue
        checked += 1
        held += fmean(gaps) <= tolerance
        numbers.append(f"{backbone}/{task}: mean consistency(partial) - consistency(copy) = {fmean(gaps):+.3f} "
                       f"over {len(gaps)} kind/threshold pairs")
    return verdict(
        "Copying KV to skipped layers costs little quality against a partial forward",
        f"mean consistency gap partial - copy <= {tolerance} (Transformer backbones)",
        checked, held, numbers,
    )


def claim_low_thresholds_repeat(cells: list[dict]) -> dict:
    checked, held, numbers = 0, 0, []
    for (backbone, task), group_cells in sorted(group(cells).items()):
        full = next((c for c in group_cells if c["method"] == "full"), None)
        early = ee_cells(group_cells)
        if full is None or not early:
            continue
        thresholds = sorted({method_of(c).threshold for c in early})
        rate = {t: fmean(c["degeneration"]["loop_rate"] for c in early if method_of(c).threshold == t)
                for t in (thresholds[0], thresholds[-1])}
        line = (f"{backbone}/{task}: looping rate full {full['degeneration']['loop_rate']:.3f}, "
                + ", ".join(f"EE at t={t:g} {r:.3f}" for t, r in rate.items()))
        if len(thresholds) < 2:
            numbers.append(f"{line} (one threshold: not counted)")
            continue
        checked += 1
        held += (rate[thresholds[0]] > full["degeneration"]["loop_rate"] + DEGENERATION_MARGIN
                 and rate[thresholds[0]] >= rate[thresholds[-1]])
        numbers.append(line)
    return verdict(
        "Low thresholds cause repetition",
        "share of looping outputs at the lowest threshold (mean over kinds and policies) exceeds full's "
        "and is at least that at the highest threshold",
        checked, held, numbers,
    )


def verdict(claim: str, test: str, checked: int, held: int, numbers: list[str]) -> dict:
    """'not checked' when no pair could tell; otherwise holds only if it held on every counted pair."""
    status = "not checked" if checked == 0 else ("holds" if held == checked else "fails")
    return {"claim": claim, "test": test, "verdict": status, "held": f"{held} of {checked}",
            "numbers": "; ".join(numbers) or "no cells to check"}


def claims_scorecard(cells: list[dict]) -> list[dict]:
    return [
        claim_mamba_beats_calm_and_ffn(cells),
        claim_ee_beats_pruning(cells),
        claim_copy_costs_little(cells),
        claim_low_thresholds_repeat(cells),
    ]
