"""Table 6's verdicts on hand-built cells: every way a comparison holds, fails or is inconclusive."""

from __future__ import annotations

import pytest

from dynamax_bench.reporting.claims import (
    CLAIMS,
    claims_scorecard,
    copy_comparisons,
    judge,
    mamba_comparisons,
    pruning_comparisons,
    repetition_comparisons,
    verdict,
)
from tests.cells import EVIDENCE, SETTINGS, make_cell, share

N = 40


def outcomes(claim: str, cells: list[dict], min_samples: int = 10) -> list:
    make = {"mamba": mamba_comparisons, "pruning": pruning_comparisons, "copy": copy_comparisons,
            "repetition": repetition_comparisons}[claim]
    return judge(CLAIMS[claim], make(cells), SETTINGS, min_samples)


def savings(level: float, spread: float = 0.05) -> list[float]:
    """N per-sample savings around `level` (so the interval has width)."""
    return [level + spread * ((i % 5) - 2) / 2 for i in range(N)]


def kinds(mamba: float, calm: float, ffn: float, match: list[float] | None = None) -> list[dict]:
    match = match or share(N, N)
    return [make_cell("ee-mamba-copy-t0.9", match, savings(mamba)), make_cell("ee-calm-copy-t0.9", match, savings(calm)),
            make_cell("ee-ffn-copy-t0.9", match, savings(ffn)),
            make_cell("ee-ffn-copy-t0.5", share(N // 2, N), savings(0.6))]  # saves most, below the quality target


def test_mamba_claim_holds_and_fails_on_savings_at_full_consistency() -> None:
    [held] = outcomes("mamba", kinds(0.30, 0.10, 0.20))
    assert held.verdict == "holds" and held.difference == pytest.approx(0.10) and held.lo > 0 and held.n == N
    [failed] = outcomes("mamba", kinds(0.30, 0.40, 0.20))
    assert failed.verdict == "fails" and failed.hi < 0


def test_a_tie_at_zero_is_inconclusive_not_holds() -> None:
    """No kind reaches the quality target: every kind saves 0 (full itself), a tie at zero."""
    [tie] = outcomes("mamba", kinds(0.3, 0.2, 0.1, match=share(N - 4, N)))
    assert tie.verdict == "inconclusive" and tie.reason == "tie: both sides 0.000"
    assert (tie.difference, tie.lo, tie.hi) == (0.0, 0.0, 0.0)


def test_a_tie_away_from_zero_is_inconclusive() -> None:
    """Both sides at 0.5 consistency on different samples: equal points, an interval around 0."""
    cells = [make_cell("prune4", share(N // 2, N), savings(0.25)),
             make_cell("ee-calm-copy-t0.9", share(N // 2, N)[::-1], savings(0.30))]
    [tie] = outcomes("pruning", cells)
    assert tie.verdict == "inconclusive" and tie.reason == "tie: both sides 0.500"


def test_an_interval_that_includes_the_margin_is_inconclusive() -> None:
    cells = [make_cell("prune4", share(20, N), savings(0.25)), make_cell("ee-calm-copy-t0.9", share(22, N), savings(0.30))]
    [close] = outcomes("pruning", cells)
    assert close.verdict == "inconclusive" and close.lo <= 0 <= close.hi
    assert close.reason == "interval includes the margin 0"


def test_fewer_samples_than_the_minimum_is_inconclusive_even_for_a_clear_difference() -> None:
    cells = [make_cell("prune4", share(2, N), savings(0.25)), make_cell("ee-calm-copy-t0.9", share(N, N), savings(0.30))]
    [clear] = outcomes("pruning", cells)
    assert clear.verdict == "holds" and clear.lo > 0.8
    [few] = outcomes("pruning", cells, min_samples=N + 1)
    assert few.verdict == "inconclusive" and few.reason == f"n = {N} < min_samples {N + 1}"
    assert few.lo > 0.8  # the interval is still shown


def test_pruning_claim_counts_only_levels_some_ee_cell_reaches() -> None:
    cells = [make_cell("prune4", share(8, N), savings(0.25)), make_cell("prune8", share(0, N), savings(0.50)),
             make_cell("ee-mamba-copy-t0.9", share(30, N), savings(0.30))]
    found = {o.comparison: o for o in outcomes("pruning", cells)}
    assert found["b/t prune4"].verdict == "holds"
    assert found["b/t prune8"].verdict == "inconclusive" and "no EE cell saves 0.500" in found["b/t prune8"].reason
    cells[-1] = make_cell("ee-mamba-copy-t0.9", share(0, N), savings(0.30))
    assert verdict(outcomes("pruning", cells)) == "fails"


def test_copy_claim_uses_the_margin_of_little() -> None:
    def cells(copy: int, partial: int) -> list[dict]:
        return [make_cell("ee-calm-copy-t0.9", share(copy, N)), make_cell("ee-calm-partial-t0.9", share(partial, N))]

    [little] = outcomes("copy", cells(N, N - 2))  # copy even better: the gap is below 0.05 for sure
    assert little.verdict == "holds" and little.hi < CLAIMS["copy"].margin
    [much] = outcomes("copy", cells(N // 2, N))
    assert much.verdict == "fails" and much.lo > CLAIMS["copy"].margin
    [unsure] = outcomes("copy", cells(N - 3, N))  # a gap of 0.075 on 40 samples
    assert unsure.verdict == "inconclusive" and unsure.lo <= 0.05 <= unsure.hi


def test_repetition_claim_needs_two_thresholds() -> None:
    full = make_cell("full", share(N, N), loops=share(0, N))
    one = [full, make_cell("ee-calm-copy-t0.9", share(N, N), loops=share(20, N))]
    [single] = outcomes("repetition", one)
    assert single.verdict == "inconclusive" and single.reason == "one threshold: no low against high"
    sweep = one[:1] + [make_cell("ee-calm-copy-t0.9", share(N, N), loops=share(2, N)),
                       make_cell("ee-calm-copy-t0.5", share(N, N), loops=share(30, N))]
    assert [o.verdict for o in outcomes("repetition", sweep)] == ["holds"]
    sweep[-1] = make_cell("ee-calm-copy-t0.5", share(N, N), loops=share(0, N))
    # 2 loops in 40 at the high threshold against none at the low: too rare to tell
    assert [o.verdict for o in outcomes("repetition", sweep)] == ["inconclusive"]
    sweep[1] = make_cell("ee-calm-copy-t0.9", share(N, N), loops=share(10, N))
    assert [o.verdict for o in outcomes("repetition", sweep)] == ["fails"]


def test_intervals_are_bonferroni_adjusted_over_the_comparisons_that_reach_the_test() -> None:
    cells = [make_cell("prune4", share(8, N), savings(0.10)), make_cell("prune8", share(4, N), savings(0.20)),
             make_cell("prune12", share(0, N), savings(0.90)), make_cell("ee-calm-copy-t0.9", share(30, N), savings(0.30))]
    found = outcomes("pruning", cells)
    assert [o.confidence for o in found if o.confidence is not None] == [pytest.approx(1 - 0.05 / 2)] * 2


def test_mismatched_samples_fail_loudly() -> None:
    cells = [make_cell("prune4", share(8, N), savings(0.25)),
             make_cell("ee-calm-copy-t0.9", share(30, N), savings(0.30), ids=[f"x{i}" for i in range(N)])]
    with pytest.raises(ValueError, match="sample ids differ"):
        outcomes("pruning", cells)


def test_scorecard_is_one_row_per_claim_with_its_comparisons() -> None:
    cells = kinds(0.30, 0.10, 0.20) + [make_cell("full", share(N, N)), make_cell("prune4", share(2, N), savings(0.05))]
    rows, details = claims_scorecard(cells, EVIDENCE)
    assert [r["claim"] for r in rows] == [c.claim for c in CLAIMS.values()]
    mamba, pruning = rows[0], rows[1]
    assert mamba["verdict"] == "holds" and mamba["comparisons"] == "1 holds, 0 fails, 0 inconclusive (of 1)"
    assert "b/t: mamba 0.300 vs max(calm, ffn) 0.200, D +0.100 [" in mamba["numbers"] and f"n={N}: holds" in mamba["numbers"]
    assert pruning["verdict"] == "holds"
    assert rows[2]["verdict"] == "inconclusive" and rows[2]["numbers"] == "no backbone/task has the cells it compares"
    assert {d.claim for d in details} == {"mamba", "pruning", "repetition"}


def test_claim_verdict_fails_when_any_comparison_fails_and_holds_only_without_failures() -> None:
    cells = [make_cell("prune4", share(2, N), savings(0.25), task="t1"),
             make_cell("ee-calm-copy-t0.9", share(N, N), savings(0.30), task="t1"),
             make_cell("prune4", share(N, N), savings(0.25), task="t2"),
             make_cell("ee-calm-copy-t0.9", share(2, N), savings(0.30), task="t2")]
    found = outcomes("pruning", cells)
    assert [o.verdict for o in found] == ["holds", "fails"] and verdict(found) == "fails"
    assert verdict(found[:1]) == "holds"
    assert verdict([]) == "inconclusive"
