"""Table 6's verdicts on hand-built cells: each claim holds, fails, or is not checked when the run cannot tell."""

from __future__ import annotations

from dataclasses import asdict

from dynamax_bench.reporting.claims import (
    claim_copy_costs_little,
    claim_ee_beats_pruning,
    claim_low_thresholds_repeat,
    claim_mamba_beats_calm_and_ffn,
)
from dynamax_bench.spec import parse_method


def cell(method: str, consistency: float = 1.0, savings: float = 0.0, loops: float = 0.0) -> dict:
    return {"backbone": "b", "task": "t", "method": method, "spec": {"method": asdict(parse_method(method))},
            "consistency": {"output_match": consistency},
            "flops": {"savings": savings}, "degeneration": {"loop_rate": loops}}


def test_mamba_claim_compares_savings_at_full_consistency() -> None:
    cells = [cell("ee-mamba-copy-t0.9", 1.0, 0.30), cell("ee-calm-copy-t0.9", 1.0, 0.10),
             cell("ee-ffn-copy-t0.9", 1.0, 0.20), cell("ee-ffn-copy-t0.5", 0.5, 0.60)]
    assert claim_mamba_beats_calm_and_ffn(cells)["verdict"] == "holds"
    cells[1] = cell("ee-calm-copy-t0.9", 1.0, 0.40)
    assert claim_mamba_beats_calm_and_ffn(cells)["verdict"] == "fails"


def test_mamba_claim_is_not_checked_when_no_kind_saves_at_that_quality() -> None:
    cells = [cell(f"ee-{k}-copy-t0.9", 0.9, 0.3) for k in ("mamba", "calm", "ffn")]
    result = claim_mamba_beats_calm_and_ffn(cells)
    assert result["verdict"] == "not checked" and result["held"] == "0 of 0"
    assert "not counted" in result["numbers"]


def test_pruning_claim_counts_only_levels_some_ee_cell_reaches() -> None:
    cells = [cell("prune4", 0.2, 0.25), cell("prune8", 0.0, 0.5), cell("ee-mamba-copy-t0.9", 0.6, 0.3)]
    result = claim_ee_beats_pruning(cells)
    assert result["verdict"] == "holds" and result["held"] == "1 of 1"
    assert "prune8" in result["numbers"] and "not counted" in result["numbers"]
    cells[-1] = cell("ee-mamba-copy-t0.9", 0.1, 0.3)
    assert claim_ee_beats_pruning(cells)["verdict"] == "fails"
    zeros = [cell("prune4", 0.0, 0.25), cell("ee-mamba-copy-t0.9", 0.0, 0.3)]
    assert claim_ee_beats_pruning(zeros)["verdict"] == "not checked"


def test_copy_claim_uses_the_mean_gap_over_matching_methods() -> None:
    cells = [cell("ee-calm-copy-t0.9", 0.80), cell("ee-calm-partial-t0.9", 0.82),
             cell("ee-ffn-copy-t0.9", 0.70), cell("ee-ffn-partial-t0.9", 0.74)]
    assert claim_copy_costs_little(cells)["verdict"] == "holds"  # mean gap 0.03
    cells[-1] = cell("ee-ffn-partial-t0.9", 0.90)
    assert claim_copy_costs_little(cells)["verdict"] == "fails"  # mean gap 0.11


def test_repetition_claim_needs_two_thresholds() -> None:
    one = [cell("full", loops=0.0), cell("ee-calm-copy-t0.9", loops=0.5)]
    assert claim_low_thresholds_repeat(one)["verdict"] == "not checked"
    sweep = one + [cell("ee-calm-copy-t0.5", loops=0.75)]
    assert claim_low_thresholds_repeat(sweep)["verdict"] == "holds"
    sweep[-1] = cell("ee-calm-copy-t0.5", loops=0.25)
    assert claim_low_thresholds_repeat(sweep)["verdict"] == "fails"
