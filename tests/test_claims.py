"""Table 6's verdicts on hand-built cells: every way a comparison holds, fails, is equivalent or inconclusive."""

from __future__ import annotations

import numpy as np
import pytest

import dynamax_bench.reporting.claims as claims
from dynamax_bench.reporting.claims import (
    SAVINGS,
    TIE,
    Comparison,
    Evidence,
    Outcome,
    Prepared,
    backbone_verdict,
    claims_scorecard,
    competence,
    counts,
    ee_cells,
    holm,
    oracle_ceilings,
    prepare,
    region_p_values,
    regions,
    scorecard,
    tally,
    target_label,
    CLAIMS,
)
from dynamax_bench.reporting.statistics import IntervalSettings, ratio_of
from dynamax_bench.spec import parse_method
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
    # not tested: no difference, interval, p-value or level to show (the table's cells stay empty)
    assert few.difference is None and few.lo is None and few.hi is None and few.p_value is None and few.level is None


def test_the_interval_is_the_resamples_percentiles_at_the_holm_level(monkeypatch: pytest.MonkeyPatch) -> None:
    """The interval shown is the one the verdict read: D's resamples at alpha / 2 and 1 - alpha / 2, alpha
    the comparison's Holm level (here the only comparison tested: 0.05)."""
    draws = np.linspace(-1.0, 1.0, 2001)  # D's resamples, by hand: the percentile q sits at -1 + 2q
    monkeypatch.setattr(claims, "resampled", lambda statistics, groups, settings: [draws])
    [outcome] = decide([full(), *kinds(0.30, 0.10, 0.20)])
    assert outcome.level == pytest.approx(0.95)
    assert (outcome.lo, outcome.hi) == pytest.approx((-0.95, 0.95))
    assert outcome.verdict == "inconclusive" and outcome.difference == pytest.approx(0.10)


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
    # every resample inside the margin: no evidence at all that the claim fails (nor that it holds)
    inside = region_p_values(np.array([-0.125, 0.0, 0.125] * 10), regions(CLAIMS["mamba"], 0.25))
    assert inside == {"holds": 1.0, "fails": 1.0, "equivalent": 0.0}


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
    # the oracle's savings ceiling goes beside savings comparisons only, not beside a consistency one
    oracle = make_cell("oracle", share(N, N), savings(0.45))
    assert copy([*cells(N, N - 2), oracle]).ceiling is None
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


def test_the_scorecard_caption_asks_about_lossless_speculation_only_with_spec_rows() -> None:
    """The default profile has no spec-* rows (config/lossless.yaml adds them): its Table 6 asks the paper's claims."""
    from types import SimpleNamespace

    from dynamax_bench.reporting.tables import scorecard as table6

    def title(cells: list[dict]) -> str:
        [table, _] = table6.tables(SimpleNamespace(cells=cells, evidence=EVIDENCE))
        return table.caption.split(",")[0]

    lossy = [full(), *kinds(0.05, 0.10, 0.02)]
    assert title(lossy) == "Claims of the paper"
    assert title([*lossy, make_cell("spec-e6-k2", share(N, N), savings(0.40))]) == \
        "Claims of the paper (and whether lossless speculation beats them)"


def rows_of(outcomes: list[Outcome], claim: str) -> list[tuple]:
    """What a reader of the comparisons table sees of one claim's rows: where, sides, verdict and why."""
    return [(o.backbone, o.task, o.comparison, o.a, o.b, o.verdict, o.reason) for o in outcomes if o.claim == claim]


def outcome(verdict: str, **numbers) -> Outcome:
    fields = dict(claim="mamba", backbone="b", task="t", comparison="b/t copy c0.9", a="mamba", a_value=None,
                  b="max(calm, ffn)", b_value=None, difference=None, lo=None, hi=None, margin=0.01, p_value=None,
                  level=None, n=None, groups=None, reason="")
    return Outcome(**{**fields, **numbers, "verdict": verdict})


def test_evidence_takes_the_claims_own_resample_count_and_the_profile_seed() -> None:
    assert Evidence.from_dict(EVIDENCE).settings == IntervalSettings(confidence=0.95, resamples=2000, seed=7)
    without = {key: value for key, value in EVIDENCE.items() if key != "claim_resamples"}
    assert Evidence.from_dict(without).settings == IntervalSettings(confidence=0.95, resamples=500, seed=7)


def test_a_claim_per_backbone_reads_only_its_decided_comparisons() -> None:
    assert backbone_verdict([]) == "inconclusive"  # nothing compared: no verdict, and no competence judged either
    assert backbone_verdict([outcome("not competent"), outcome("not competent")]) == "not competent"
    assert backbone_verdict([outcome("not competent"), outcome("inconclusive")]) == "inconclusive"
    assert backbone_verdict([outcome("inconclusive"), outcome("equivalent"), outcome("not competent")]) == "equivalent"
    four = [outcome("equivalent"), outcome("holds"), outcome("equivalent"), outcome("fails")]
    assert backbone_verdict(four) == "mixed (2 equivalent, 1 fails, 1 holds)"
    every = [outcome(v) for v in ("not competent", "inconclusive", "holds", "fails", "inconclusive", "equivalent",
                                  "holds", "inconclusive")]
    assert tally(every) == "2 holds, 1 fails, 1 equivalent, 3 inconclusive, 1 not competent (of 8)"
    assert tally([outcome("fails")]) == "1 fails (of 1)"


def test_an_outcome_reads_as_one_line() -> None:
    tested = outcome("holds", difference=0.1, lo=0.05, hi=0.15, n=40, p_value=0.0012)
    assert tested.line() == "b/t copy c0.9: D +0.100 [+0.050, +0.150] n=40, p=0.0012: holds"
    crossing = outcome("inconclusive", difference=-0.004, lo=-0.02, hi=0.012, n=40, p_value=0.3, reason="crosses")
    assert crossing.line() == "b/t copy c0.9: D -0.004 [-0.020, +0.012] n=40, p=0.3: inconclusive (crosses)"
    untested = outcome("inconclusive", reason="n = 5 < min_samples 10")
    assert untested.line() == "b/t copy c0.9: inconclusive (n = 5 < min_samples 10)"


def test_target_label_names_the_consistency_target_as_the_method_does() -> None:
    assert target_label(parse_method("ee-mamba-copy-c0.95")) == "c0.95"


def test_holm_steps_down_by_p_value_over_the_tested_comparisons_only() -> None:
    """Four tested comparisons (one more could not be formed): levels alpha/4, alpha/3, alpha/2, alpha by rank;
    a p-value equal to its level is decided; the first miss stops the rest, however small their p-value."""
    def tested(p: float, region: str) -> Prepared:
        return Prepared(Comparison("mamba", "b", "t", "w", "A", "B"), draws=np.zeros(3), region=region, p=p)

    alpha = 0.05
    family = [tested(0.01, "holds"), tested(alpha, "fails"), tested(alpha / 3, "equivalent"),
              Prepared(Comparison("mamba", "b", "t", "w", "A", "B", reason="no cell"), "no cell"),
              tested(0.03, "holds")]
    levels = holm(family, alpha)
    assert levels == pytest.approx({0: alpha / 4, 2: alpha / 3, 4: alpha / 2, 1: alpha})
    assert [(p.verdict, p.reason) for p in family] == [
        ("holds", ""),
        ("inconclusive", "Holm stopped at a smaller p-value before it (p = 0.05)"),
        ("equivalent", ""),
        ("inconclusive", "no cell"),
        ("inconclusive", "interval at its Holm level crosses a margin edge (p = 0.03 > 0.025)"),
    ]


def test_a_region_holds_its_edges() -> None:
    """Equivalence is D within [-m, m]: resamples exactly on -m or +m are inside, not evidence against it."""
    m = 0.25  # exact in binary, so the draws sit on the edges exactly
    bounds = regions(CLAIMS["mamba"], m)
    assert region_p_values(np.array([-m, m, 0.0, -m]), bounds)["equivalent"] == 0.0
    assert region_p_values(np.array([-m, -m, 0.0, 0.1]), bounds)["equivalent"] == 0.0
    assert region_p_values(np.array([m, m, 0.0, 0.1]), bounds)["equivalent"] == 0.0
    assert region_p_values(np.array([m, 0.5, 0.3, 0.3]), bounds)["holds"] == 0.0


def test_a_difference_on_the_margin_in_every_resample_is_equivalent() -> None:
    """Both "holds" and "equivalent" contain D = m; the margin's own rule (inside +-m reads equivalent)
    decides, not the regions' order."""
    cells = [full(), *[make_cell(f"ee-{kind}-copy-c0.9", share(N, N), [level] * N)
                       for kind, level in (("mamba", 0.5), ("calm", 0.25), ("ffn", 0.125))]]
    [edge] = decide(cells, margins={**EVIDENCE["margins"], "decode_savings": 0.25})  # all exact in binary
    assert edge.difference == 0.25 and edge.lo == edge.hi == 0.25
    assert edge.verdict == "equivalent"


def test_competence_names_every_reason_and_the_floor_itself_is_competent() -> None:
    cells = [make_cell("ee-calm-copy-t0.9", share(N, N), backbone="a"),  # a first group with no full cell
             make_cell("full", share(N, N), em=share(2, N), loops=share(8, N)),  # EM exactly 0.05, loops exactly 0.2
             make_cell("full", share(N, N), em=share(1, N), loops=share(9, N), backbone="weak"),
             make_cell("full", share(N, N), em=share(0, N), task="u")]  # no metric named for task u: loops only
    assert competence(cells, Evidence.from_dict(EVIDENCE)) == {
        ("a", "t"): "no full cell to judge competence by",
        ("b", "t"): "",
        ("weak", "t"): "full em 0.025 < floor 0.05; full loops on 0.225 of samples > 0.2",
        ("b", "u"): "",
    }


def test_scorecard_rows_name_claim_test_margin_verdict_and_tally() -> None:
    extra = Comparison("copy", "b", "t", "b/t by hand", "partial", "copy", reason="formed elsewhere")
    rows, outcomes = claims_scorecard([full(), *kinds(0.30, 0.10, 0.20)], EVIDENCE, [extra])
    assert rows == [
        {"claim": CLAIMS["mamba"].claim, "backbone": "b", "test": CLAIMS["mamba"].test,
         "margin": "superiority, m = 0.01", "verdict": "holds", "comparisons": "1 holds (of 1)"},
        {"claim": CLAIMS["copy"].claim, "backbone": "b", "test": CLAIMS["copy"].test,
         "margin": "noninferiority, m = 0.05", "verdict": "inconclusive", "comparisons": "1 inconclusive (of 1)"},
    ]
    by_hand = ("b", "t", "b/t by hand", "partial", "copy", "inconclusive", "formed elsewhere")
    assert rows_of(outcomes, "copy") == [by_hand]  # `extra` comparisons join the scorecard's one family


def test_mamba_and_prompt_state_rows_name_their_target_and_sides() -> None:
    """mamba at c0.8 has no calm or ffn to beat; at c0.9 it has calm. The prompt-state ablation pairs mamba with
    mamba_fresh at the same target (none at c0.7); a typed-in threshold is no target."""
    cells = [full(), make_cell("ee-mamba-copy-t0.5", share(N, N), savings(0.6)),
             make_cell("ee-mamba-copy-c0.8", share(N, N), savings(0.2)),
             make_cell("ee-mamba-copy-c0.9", share(N, N), savings(0.3)),
             make_cell("ee-calm-copy-c0.9", share(N, N), savings(0.1), threshold=0.7),
             make_cell("ee-mamba_fresh-copy-c0.7", share(N, N), savings(0.1)),
             make_cell("ee-mamba_fresh-copy-c0.9", share(N, N), certified=False)]
    outcomes = decide(cells)
    assert rows_of(outcomes, "mamba") == [
        ("b", "t", "b/t copy c0.8", "mamba", "max(calm, ffn)", "inconclusive",
         "no calm or ffn cell calibrated to this target"),
        ("b", "t", "b/t copy c0.9", "mamba", "max(calm, ffn) [mamba t=0.9, calm t=0.7]", "holds", ""),
    ]
    assert rows_of(outcomes, "prompt_state") == [
        ("b", "t", "b/t copy c0.9", "mamba (t=0.9)", "mamba_fresh (not certified: runs as full)", "holds", ""),
    ]
    [ablation] = [o for o in outcomes if o.claim == "prompt_state"]
    assert ablation.a_value == pytest.approx(0.3) and ablation.b_value == 0.0  # uncertified: saves nothing
    assert ablation.ceiling is None and ablation.margin == 0.01


def test_pruning_rows_say_why_a_level_has_no_comparison() -> None:
    """prune0 drops nothing (no level); prune1 has no cell calibrated to it; prune2's cells fall short of its
    savings by more than the margin; prune4's mamba cell falls short by exactly the margin, which still counts."""
    margins = {**EVIDENCE["margins"], "decode_savings": 0.125}  # exact in binary, as are the savings below
    cells = [full(), make_cell("prune0", share(N, N)),
             make_cell("prune1", share(30, N), [0.125] * N), make_cell("prune2", share(20, N), [0.25] * N),
             make_cell("prune4", share(10, N), [0.5] * N),
             make_cell("ee-calm-copy-p2", share(N, N), [0.05] * N),
             make_cell("ee-ffn-copy-p2", share(N, N), [0.1] * N),
             make_cell("ee-mamba-copy-p4", share(30, N), [0.375] * N),
             make_cell("ee-calm-copy-p4", share(20, N), [0.5] * N)]
    outcomes = decide(cells, margins=margins)
    assert rows_of(outcomes, "pruning") == [
        ("b", "t", "b/t prune1", "best EE", "prune1 (decode savings 0.125)", "inconclusive",
         "no early-exit cell calibrated to the savings of prune1"),
        ("b", "t", "b/t prune2", "best EE", "prune2 (decode savings 0.250)", "inconclusive",
         "no early-exit cell reached its decode savings on the evaluated samples (best: ee-ffn-copy-p2 0.100; the "
         "most it can save is bounded by its first exit and classifier cost)"),
        ("b", "t", "b/t prune4", "best of 2 EE (calm, mamba)", "prune4 (decode savings 0.500)", "holds", ""),
    ]
    [level4] = [o for o in outcomes if o.comparison == "b/t prune4"]
    assert level4.difference == pytest.approx(30 / N - 10 / N)  # the better of the two by consistency: mamba


def test_copy_rows_pair_fixed_thresholds_of_each_kind() -> None:
    """Two kind/threshold pairs on backbone b (none on a); calibrated cells, even at the same threshold, stay out."""
    cells = [full("a"), make_cell("ee-calm-copy-t0.9", share(N, N), backbone="a"),
             full(), make_cell("ee-calm-copy-t0.9", share(N, N)), make_cell("ee-calm-partial-t0.9", share(N, N)),
             make_cell("ee-ffn-copy-t0.5", share(N - 1, N)), make_cell("ee-ffn-partial-t0.5", share(N, N)),
             make_cell("ee-calm-copy-c0.8", share(0, N)), make_cell("ee-calm-partial-c0.8", share(N // 2, N))]
    outcomes = decide(cells)
    assert rows_of(outcomes, "copy") == [("b", "t", "b/t", "partial (2 kind/threshold)", "copy", "holds", "")]
    [copy] = [o for o in outcomes if o.claim == "copy"]
    assert copy.a_value == 1.0 and copy.b_value == pytest.approx((1 + (N - 1) / N) / 2)


def test_repetition_rows_name_the_thresholds_compared() -> None:
    def cells(backbone: str, *thresholds: str) -> list[dict]:
        return [make_cell("full", share(N, N), loops=share(0, N), backbone=backbone),
                *[make_cell(f"ee-calm-copy-t{t}", share(N, N), loops=share(30 if t == "0.5" else 2, N),
                            backbone=backbone) for t in thresholds]]

    outcomes = decide(cells("a") + cells("b", "0.9") + cells("c", "0.5", "0.9") + cells("d", "0.9"))
    assert rows_of(outcomes, "repetition") == [
        ("b", "t", "b/t", "EE at t=0.9", "full", "inconclusive", "one fixed threshold: no low against high"),
        ("c", "t", "c/t", "EE at t=0.5", "max(EE at t=0.9, full)", "holds", ""),
        ("d", "t", "d/t", "EE at t=0.9", "full", "inconclusive", "one fixed threshold: no low against high"),
    ]


def test_lossless_rows_list_every_spec_and_lossy_cell_per_target() -> None:
    spec = [make_cell("spec-e6-k2", share(N, N), savings(0.40)), make_cell("spec-e4-k2", share(N, N), savings(0.45))]
    lossy = [make_cell("ee-calm-copy-c0.9", share(N, N), savings(0.10)),
             make_cell("ee-mamba-partial-c0.9", share(N, N), savings(0.20), threshold=0.8),
             make_cell("ee-ffn-copy-c0.8", share(N, N), savings(0.50), threshold=0.6)]
    outcomes = decide([full("a"), *kinds(0.05, 0.10, 0.02, backbone="a"), full(), *spec, *lossy])
    assert rows_of(outcomes, "lossless") == [
        ("b", "t", "b/t c0.8", "max(spec-e6-k2, spec-e4-k2)", "max(calm, ffn, mamba) [ffn-copy t=0.6]", "fails", ""),
        ("b", "t", "b/t c0.9", "max(spec-e6-k2, spec-e4-k2)",
         "max(calm, ffn, mamba) [calm-copy t=0.9, mamba-partial t=0.8]", "holds", ""),
    ]


def test_an_oracle_cell_without_intervals_gives_no_ceiling_rather_than_an_error() -> None:
    oracle = make_cell("oracle", share(N, N), savings(0.45))
    assert oracle_ceilings([full(), oracle]) == {("b", "t"): pytest.approx(0.45)}
    old = {key: value for key, value in oracle.items() if key != "intervals"}
    bare = {**oracle, "intervals": {"kind": "percentile"}}
    assert oracle_ceilings([old, bare]) == {}


def test_ee_cells_pick_by_kind_policy_and_how_the_threshold_was_set() -> None:
    cells = [make_cell("ee-calm-copy-t0.9", share(N, N)), make_cell("ee-ffn-copy-t0.9", share(N, N)),
             make_cell("ee-calm-partial-c0.9", share(N, N)), full()]
    assert [c["method"] for c in ee_cells(cells, kind="calm")] == ["ee-calm-copy-t0.9", "ee-calm-partial-c0.9"]
    assert [c["method"] for c in ee_cells(cells, kind="calm", fixed=False)] == ["ee-calm-partial-c0.9"]
    assert [c["method"] for c in ee_cells(cells, policy="copy")] == ["ee-calm-copy-t0.9", "ee-ffn-copy-t0.9"]


def test_a_comparison_is_tested_from_min_samples_on_and_ties_only_within_tie() -> None:
    """n = min_samples is enough; sides equal on average but not per sample are tested (here: equivalent);
    sides within TIE of each other in every resample, or equal and nonzero, are not exercised."""
    evidence = Evidence.from_dict({**EVIDENCE, "min_samples": N})
    mamba, calm = make_cell("ee-mamba-copy-c0.9", share(N, N), savings(0.2, 0.01)), make_cell(
        "ee-calm-copy-c0.9", share(N, N), [0.2] * N)
    r_mamba, r_calm = ratio_of(mamba, SAVINGS), ratio_of(calm, SAVINGS)

    def prepared(a, b) -> Prepared:
        comp = Comparison("mamba", "b", "t", "w", "A", "B", [mamba, calm], a, b)
        return prepare(comp, CLAIMS["mamba"], 0.01, evidence, {})

    spread = prepared(lambda take: take(r_mamba), lambda take: take(r_calm))
    assert spread.n == N and spread.draws is not None and spread.region == "equivalent" and spread.reason == ""
    same = prepared(lambda take: take(r_calm), lambda take: take(r_calm))
    assert same.draws is None and same.reason == "not exercised: both sides 0.200 in every resample"
    within = prepared(lambda take: 0.0 * take(r_mamba) + TIE, lambda take: 0.0 * take(r_mamba))
    assert within.draws is None and within.reason == "not exercised: both sides 0.000 in every resample"
