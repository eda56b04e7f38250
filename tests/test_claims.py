"""Table 6's verdicts on hand-built cells: every way a comparison holds, fails, is equivalent or inconclusive."""

from __future__ import annotations

import numpy as np
import pytest

from dynamax_bench.reporting.claims import (
    Evidence,
    backbone_verdict,
    claims_scorecard,
    counts,
    region_p_values,
    regions,
    scorecard,
    CLAIMS,
)
from tests.cells import EVIDENCE, make_cell, share

N = 40


def decide(cells: list[dict], **evidence) -> list:
    return scorecard(cells, Evidence.from_dict({**EVIDENCE, **evidence}))


def savings(level: float, spread: float = 0.05) -> list[float]:
    """N per-sample decode savings around `level` (so the interval has width)."""
    return [level + spread * ((i % 5) - 2) / 2 for i in range(N)]


def full(backbone: str = "b", task: str = "t", loops: int = 0) -> dict:
    return make_cell("full", share(N, N), loops=share(loops, N), backbone=backbone, task=task)


def kinds(mamba: float, calm: float, ffn: float, target: str = "c0.9", backbone: str = "b", **cell) -> list[dict]:
    return [make_cell(f"ee-{kind}-copy-{target}", share(N, N), savings(level), backbone=backbone, **cell)
            for kind, level in (("mamba", mamba), ("calm", calm), ("ffn", ffn))]


def test_mamba_claim_holds_fails_and_is_equivalent_by_the_margin() -> None:
    [held] = decide([full(), *kinds(0.30, 0.10, 0.20)])
    assert held.verdict == "holds" and held.difference == pytest.approx(0.10) and held.lo > 0.01 and held.n == N
    [failed] = decide([full(), *kinds(0.30, 0.40, 0.20)])
    assert failed.verdict == "fails" and failed.hi < -0.01
    # a difference of 0.002 on every sample: surely inside the margin of 0.01, not a win
    [same] = decide([full(), *kinds(0.202, 0.20, 0.10)])
    assert same.verdict == "equivalent" and -0.01 < same.lo <= same.hi < 0.01
    [small] = decide([full(), *kinds(0.202, 0.20, 0.10)], margins={**EVIDENCE["margins"], "decode_savings": 0.0})
    assert small.verdict == "holds"  # with no margin stated, the same 0.002 would decide the claim


def test_savings_comparisons_show_the_oracle_ceiling() -> None:
    oracle = make_cell("oracle", share(N, N), savings(0.45))
    [outcome] = decide([full(), oracle, *kinds(0.30, 0.10, 0.20)])
    assert outcome.ceiling == pytest.approx(0.45)
    [without] = decide([full(), *kinds(0.30, 0.10, 0.20)])
    assert without.ceiling is None  # no oracle cell: no ceiling, rather than a made-up one


def test_no_certified_kind_is_not_exercised_not_a_verdict() -> None:
    """No kind certified at the target: every side runs as full and saves exactly 0."""
    cells = [full(), *[make_cell(f"ee-{k}-copy-c0.99", share(N, N), certified=False) for k in ("mamba", "calm", "ffn")]]
    [tie] = decide(cells)
    assert tie.verdict == "inconclusive" and tie.reason == "not exercised: both sides 0.000 in every resample"
    assert "calm not certified: runs as full" in tie.b


def test_a_backbone_that_is_not_competent_gets_no_verdict() -> None:
    """Its full model loops on half the samples: even a clear difference is not a claim about quality."""
    [gated] = decide([full(loops=N // 2), *kinds(0.30, 0.10, 0.20)])
    assert gated.verdict == "not competent" and "loops on 0.500 of samples > 0.2" in gated.reason
    cells = [make_cell("full", share(N, N), em=share(1, N)), *kinds(0.30, 0.10, 0.20)]
    [weak] = decide(cells)
    assert weak.verdict == "not competent" and "full em 0.025 < floor 0.05" in weak.reason


def test_fewer_samples_than_the_minimum_is_inconclusive() -> None:
    [few] = decide([full(), *kinds(0.30, 0.10, 0.20)], min_samples=N + 1)
    assert few.verdict == "inconclusive" and few.reason == f"n = {N} < min_samples {N + 1}"


def test_holm_over_the_whole_scorecard_decides_less_than_each_comparison_alone() -> None:
    """A difference decided on its own (p about 0.02 < alpha) is not decided in a family of 7 where it has the
    smallest p-value: Holm tests it first, at alpha / 7."""
    noisy = [0.065 + (0.3 if i % 4 == 0 else -0.1) for i in range(N)]  # mean 0.065, wide spread
    weak = [full(task="w"), make_cell("ee-mamba-copy-c0.9", share(N, N), noisy, task="w"),
            make_cell("ee-calm-copy-c0.9", share(N, N), [0.0] * N, task="w")]
    [alone] = decide(weak)
    assert alone.verdict == "holds" and alone.level == pytest.approx(0.95) and 0.05 / 7 < alone.p_value <= 0.05
    # six comparisons whose difference sits on the margin's edge: no region, large p-values
    edge = [cell for i in range(6) for cell in [full(task=f"e{i}"), *kinds(0.21, 0.20, 0.10, task=f"e{i}")]]
    found = {o.task: o for o in decide(weak + edge)}
    assert all(found[f"e{i}"].verdict == "inconclusive" for i in range(6))
    assert found["w"].verdict == "inconclusive" and "Holm level" in found["w"].reason
    assert found["w"].level == pytest.approx(1 - 0.05 / 7)


def test_p_values_are_twice_the_resamples_beyond_a_region_edge() -> None:
    draws = np.array([-0.02, 0.005, 0.02, 0.03, 0.04] * 20)
    p = region_p_values(draws, regions(CLAIMS["mamba"], 0.01))
    assert p["holds"] == pytest.approx(2 * 0.4) and p["fails"] == pytest.approx(1.0)
    assert p["equivalent"] == pytest.approx(min(1.0, 2 * 0.6))


def test_pruning_claim_reads_the_cells_calibrated_to_each_level() -> None:
    cells = [full(), make_cell("prune4", share(8, N), savings(0.25)), make_cell("prune8", share(0, N), savings(0.50)),
             make_cell("ee-mamba-copy-p4", share(30, N), savings(0.27), threshold=0.6),
             make_cell("ee-calm-copy-p4", share(20, N), savings(0.30), threshold=0.5),
             make_cell("ee-mamba-copy-p8", share(10, N), savings(0.31), threshold=0.0, certified=False)]
    found = {o.comparison: o for o in decide(cells) if o.claim == "pruning"}
    level4 = found["b/t prune4"]
    assert level4.verdict == "holds" and level4.a.startswith("best of 2 EE")
    assert level4.difference == pytest.approx(30 / N - 8 / N)
    level8 = found["b/t prune8"]
    assert level8.verdict == "inconclusive" and "no early-exit cell reached its decode savings" in level8.reason


def test_copy_claim_is_non_inferiority_within_its_margin() -> None:
    def cells(copy: int, partial: int) -> list[dict]:
        return [full(), make_cell("ee-calm-copy-t0.9", share(copy, N)), make_cell("ee-calm-partial-t0.9", share(partial, N))]

    def copy(cells: list[dict]):
        [out] = [o for o in decide(cells) if o.claim == "copy"]
        return out

    little = copy(cells(N, N - 2))
    assert little.verdict == "holds" and little.hi < 0.05
    much = copy(cells(N // 2, N))
    assert much.verdict == "fails" and much.lo > 0.05
    assert copy(cells(N - 3, N)).verdict == "inconclusive"


def test_repetition_claim_uses_the_fixed_thresholds() -> None:
    base = [make_cell("full", share(N, N), loops=share(0, N)),
            make_cell("ee-calm-copy-t0.9", share(N, N), loops=share(2, N))]
    [single] = decide(base)
    assert single.reason == "one fixed threshold: no low against high"
    [held] = decide(base + [make_cell("ee-calm-copy-t0.5", share(N, N), loops=share(30, N))])
    assert held.verdict == "holds"


def test_grouped_samples_widen_the_interval() -> None:
    """Ten stories of four turns that agree within a story: resampling stories, not turns, widens D's interval."""
    per_story = [0.3, -0.1, 0.4, 0.0, 0.2, -0.2, 0.5, 0.1, 0.0, 0.3]
    noisy = [per_story[i // 4] for i in range(N)]
    stories = [f"story{i // 4}" for i in range(N)]

    def width(groups: list[str] | None) -> float:
        cells = [full(), make_cell("ee-mamba-copy-c0.9", share(N, N), noisy, groups=groups),
                 make_cell("ee-calm-copy-c0.9", share(N, N), [0.0] * N, groups=groups)]
        [out] = decide(cells)
        assert out.n == N and out.groups == (10 if groups else N)
        return out.hi - out.lo

    assert width(stories) > 1.5 * width(None)


def test_per_backbone_verdicts_do_not_let_one_backbone_fail_another() -> None:
    cells = [full("x"), *kinds(0.30, 0.10, 0.20, backbone="x"), full("y"), *kinds(0.10, 0.30, 0.20, backbone="y")]
    rows, outcomes = claims_scorecard(cells, EVIDENCE)
    verdicts = {(r["claim"], r["backbone"]): r["verdict"] for r in rows}
    assert verdicts[(CLAIMS["mamba"].claim, "x")] == "holds" and verdicts[(CLAIMS["mamba"].claim, "y")] == "fails"
    assert counts(outcomes) == {"comparisons": 2, "decided": 2, "holds": 1, "fails": 1, "equivalent": 0,
                                "inconclusive": 0, "not competent": 0}
    assert backbone_verdict(outcomes) == "mixed (1 fails, 1 holds)"


def test_mismatched_samples_fail_loudly() -> None:
    cells = [full(), make_cell("ee-mamba-copy-c0.9", share(N, N), savings(0.3)),
             make_cell("ee-calm-copy-c0.9", share(N, N), savings(0.1), ids=[f"x{i}" for i in range(N)])]
    with pytest.raises(ValueError, match="sample ids differ"):
        decide(cells)


def test_lossless_row_compares_spec_with_the_best_lossy_exit_at_each_target() -> None:
    """spec-* meets every consistency target (it equals full), so only its savings decide."""
    spec = make_cell("spec-e6-k2", share(N, N), savings(-0.30))
    [lost] = [o for o in decide([full(), spec, *kinds(0.05, 0.10, 0.02)]) if o.claim == "lossless"]
    assert lost.verdict == "fails" and lost.difference == pytest.approx(-0.40) and lost.comparison == "b/t c0.9"
    assert lost.a == "max(spec-e6-k2)" and "calm-copy t=0.9" in lost.b
    [won] = [o for o in decide([full(), make_cell("spec-e6-k2", share(N, N), savings(0.40)), *kinds(0.05, 0.10, 0.02)])
             if o.claim == "lossless"]
    assert won.verdict == "holds" and won.difference == pytest.approx(0.30)
    assert not [o for o in decide([full(), *kinds(0.05, 0.10, 0.02)]) if o.claim == "lossless"]  # no spec cell, no row
