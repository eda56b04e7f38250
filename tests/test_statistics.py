"""The bootstrap behind every interval: coverage on simulated data, pairing, determinism, errors."""

from __future__ import annotations

import math
import statistics as stats

import numpy as np
import pytest

from dynamax_bench.reporting.statistics import (
    Groups,
    IntervalSettings,
    Ratio,
    estimate,
    estimates,
    lm_eval_stderr,
    paired_difference,
    paired_n,
    percentile_interval,
)
from tests.cells import make_cell, share


def coverage(draw, truth: float, n: int, reps: int, resamples: int = 400) -> float:
    """Share of `reps` simulated data sets whose 95% interval of the mean covers `truth`."""
    rng = np.random.default_rng(2024)
    hits = 0
    for rep in range(reps):
        values = draw(rng, n)
        est = estimate(lambda take, r=Ratio.mean(values): take(r), Groups.singletons(n), IntervalSettings(0.95, resamples, rep))
        hits += est.includes(truth)
    return hits / reps


def test_interval_covers_the_true_mean_at_about_the_nominal_rate() -> None:
    bernoulli = coverage(lambda rng, n: (rng.random(n) < 0.3).astype(float), 0.3, n=60, reps=300)
    normal = coverage(lambda rng, n: rng.normal(5.0, 2.0, n), 5.0, n=60, reps=300)
    # 300 replications: a binomial standard error of 0.013 around 0.95
    assert 0.90 <= bernoulli <= 0.99, bernoulli
    assert 0.90 <= normal <= 0.99, normal


def test_a_rare_event_on_few_samples_is_under_covered_which_min_samples_guards() -> None:
    """P(no event in 10 samples of p=0.1) = 0.35: then every resample is 0 and the interval [0, 0]
    misses 0.1. At the default min_samples (30) coverage is back near nominal."""
    rare = lambda rng, n: (rng.random(n) < 0.1).astype(float)  # noqa: E731
    assert coverage(rare, 0.1, n=10, reps=300) < 0.8
    assert coverage(rare, 0.1, n=30, reps=300) >= 0.88


def test_percentile_interval_matches_the_normal_interval_on_many_samples() -> None:
    values = np.random.default_rng(0).normal(0.0, 1.0, 2000)
    est = estimate(lambda take, r=Ratio.mean(values): take(r), Groups.singletons(len(values)), IntervalSettings(0.95, 4000, 1))
    half = 1.96 * stats.stdev(values) / math.sqrt(len(values))
    assert est.value == pytest.approx(float(values.mean()))
    assert est.lo == pytest.approx(est.value - half, abs=0.1 * half)
    assert est.hi == pytest.approx(est.value + half, abs=0.1 * half)


def test_ratio_statistic_is_a_ratio_of_sums_not_a_mean_of_ratios() -> None:
    executed, full = np.array([10.0, 90.0]), np.array([100.0, 100.0])
    savings = Ratio(full - executed, full)
    assert savings.value() == pytest.approx(1 - 100 / 200)
    layers = Ratio(np.array([30.0, 2.0]), np.array([10.0, 1.0]))
    assert layers.value() == pytest.approx(32 / 11)  # mean layers over tokens, not the mean of 3.0 and 2.0


def test_constant_quantity_has_a_zero_width_interval() -> None:
    found = estimates({"x": Ratio.mean([0.75] * 12)}, Groups.singletons(12), IntervalSettings(resamples=200))
    assert found["x"].value == found["x"].lo == found["x"].hi == 0.75 and found["x"].n == 12


def test_paired_difference_of_identical_samples_is_exactly_zero_with_zero_width() -> None:
    a = make_cell("ee-calm-copy-t0.9", share(7, 20), savings=[0.1 * (i % 4) for i in range(20)])
    b = make_cell("ee-calm-partial-t0.9", share(7, 20), savings=[0.1 * (i % 4) for i in range(20)])
    for quantity in ("consistency.output_match", "flops.total_savings", "layers.mean_executed"):
        diff = paired_difference(a, b, quantity, IntervalSettings(resamples=300))
        assert (diff.value, diff.lo, diff.hi) == (0.0, 0.0, 0.0), quantity


def test_pairing_narrows_the_interval_of_correlated_samples() -> None:
    """Two methods that agree on most samples: the paired interval of their difference is far
    narrower than one that ignores the pairing (resampling each side on its own)."""
    rng = np.random.default_rng(3)
    base = (rng.random(80) < 0.5).astype(float)
    flip = base.copy()
    flip[:4] = 1.0 - flip[:4]
    a, b = make_cell("ee-calm-copy-t0.9", list(base)), make_cell("ee-calm-partial-t0.9", list(flip))
    settings = IntervalSettings(resamples=1000, seed=5)
    paired = paired_difference(a, b, "consistency.output_match", settings)
    one = estimate(lambda take, r=Ratio.mean(base): take(r), Groups.singletons(80), settings)
    other = estimate(lambda take, r=Ratio.mean(flip): take(r), Groups.singletons(80), IntervalSettings(resamples=1000, seed=6))
    unpaired_width = math.hypot(one.hi - one.lo, other.hi - other.lo)
    assert paired.hi - paired.lo < 0.5 * unpaired_width


def test_same_inputs_and_settings_give_identical_estimates_and_a_new_seed_other_draws() -> None:
    values = list(np.random.default_rng(1).random(25))
    run = lambda seed: estimates({"m": Ratio.mean(values)}, Groups.singletons(25), IntervalSettings(resamples=300, seed=seed))["m"]  # noqa: E731
    assert run(11) == run(11)
    assert (run(11).lo, run(11).hi) != (run(12).lo, run(12).hi)


def test_paired_comparison_refuses_cells_of_different_samples() -> None:
    a = make_cell("ee-calm-copy-t0.9", share(3, 5), backbone="tiny", task="triviaqa")
    b = make_cell("full", share(3, 5), backbone="tiny", task="triviaqa", ids=["s0", "s1", "s2", "s3", "other"])
    with pytest.raises(ValueError, match="tiny/triviaqa/ee-calm-copy-t0.9 and tiny/triviaqa/full: their sample ids differ"):
        paired_n([a, b])


def test_a_cell_scored_before_intervals_says_how_to_rescore() -> None:
    old = {"backbone": "b", "task": "t", "method": "full"}
    with pytest.raises(ValueError, match="rerun its score rule"):
        paired_n([old, old])


def test_task_metrics_carry_lm_evals_stderr_of_the_mean() -> None:
    values = [0.0, 1.0, 1.0, 0.5, 0.25]
    assert lm_eval_stderr(values) == pytest.approx(stats.stdev(values) / math.sqrt(len(values)))
    assert lm_eval_stderr([1.0]) is None


def test_grouped_samples_are_resampled_whole() -> None:
    """Ten groups of four identical samples: the cluster bootstrap's interval is that of ten samples, about
    twice as wide as forty independent ones would give; every resample's samples come in whole groups."""
    per_group = np.random.default_rng(4).normal(0.0, 1.0, 10)
    values = np.repeat(per_group, 4)
    ratio = Ratio.mean(values)
    settings = IntervalSettings(resamples=2000, seed=2)
    grouped = estimate(lambda take: take(ratio), Groups.of([f"g{i // 4}" for i in range(40)]), settings)
    alone = estimate(lambda take: take(ratio), Groups.singletons(40), settings)
    assert grouped.value == alone.value == pytest.approx(float(values.mean()))
    assert (grouped.n, grouped.groups, alone.groups) == (40, 10, 40)
    assert (grouped.hi - grouped.lo) > 1.6 * (alone.hi - alone.lo)
    ten = estimate(lambda take, r=Ratio.mean(per_group): take(r), Groups.singletons(10), settings)
    assert (grouped.lo, grouped.hi) == pytest.approx((ten.lo, ten.hi))


def test_a_ratio_of_sums_is_the_same_over_samples_and_over_group_sums() -> None:
    executed, full = np.array([10.0, 90.0, 40.0]), np.array([100.0, 100.0, 50.0])
    savings = Ratio(full - executed, full)
    groups = Groups.of(["a", "a", "b"])
    assert (groups.sums(savings.num).sum() / groups.sums(savings.den).sum()) == pytest.approx(savings.value())


def test_resamples_without_a_value_are_left_out_of_the_interval() -> None:
    """Decode savings of a resample that drew only one-token answers (no decode step) is 0/0."""
    assert percentile_interval(np.array([np.nan, 0.1, 0.2, 0.3]), 0.5) == pytest.approx((0.15, 0.25))
    lo, hi = percentile_interval(np.array([np.nan, np.nan]), 0.95)
    assert math.isnan(lo) and math.isnan(hi)
    found = estimates({"s": Ratio(np.array([0.0, 0.0]), np.array([0.0, 0.0]))}, Groups.singletons(2), IntervalSettings(resamples=100))
    assert found == {}


def test_a_cells_estimate_and_ratio_are_read_by_name_and_a_missing_one_named() -> None:
    from dynamax_bench.reporting.statistics import estimate_of, ratio_of

    cell = make_cell("ee-calm-copy-t0.9", [1.0, 0.0, 1.0, 1.0], savings=[0.5, 0.0, 0.25, 0.25])
    assert estimate_of(cell, "consistency.output_match")["value"] == 0.75
    assert ratio_of(cell, "flops.decode_savings").value() == pytest.approx(0.25)
    with pytest.raises(ValueError, match=r"^cell b/t/ee-calm-copy-t0\.9 has no interval for 'metrics\.f1' \(scored "
                                         r"before it existed\?\): rerun its score rule, e\.g\. snakemake --forcerun score$"):
        estimate_of(cell, "metrics.f1")
    with pytest.raises(KeyError, match=r"cell b/t/ee-calm-copy-t0\.9 has no per-sample 'flops\.full'; it has \["):
        ratio_of(cell, "flops.full")  # an input of the derived ratios, not a quantity
    with pytest.raises(KeyError, match=r"has no per-sample 'metrics\.f1'"):
        ratio_of(cell, "metrics.f1")


def test_a_cell_scored_without_intervals_is_named_not_a_crash() -> None:
    from dynamax_bench.reporting.statistics import estimate_of

    cell = make_cell("full", [1.0, 0.0])
    for older in ({k: v for k, v in cell.items() if k != "intervals"}, {**cell, "intervals": {}}):
        with pytest.raises(ValueError, match=r"^cell b/t/full has no interval for 'metrics\.f1'"):
            estimate_of(older, "metrics.f1")


def test_resamples_have_one_row_per_statistic_whatever_the_groups() -> None:
    from dynamax_bench.reporting.statistics import resampled

    a, b = Ratio.mean([1.0, 0.0, 0.5]), Ratio.mean([0.25, 0.5, 1.0])
    settings = IntervalSettings(0.95, 40, 0)
    for groups in (Groups.of(["s", "s", "s"]), Groups.singletons(3)):
        draws = resampled([lambda take: take(a), lambda take: take(b)], groups, settings)
        assert draws.shape == (2, 40)
    one = resampled([lambda take: take(a), lambda take: take(b)], Groups.of(["s"] * 3), settings)
    assert np.all(one[0] == 0.5) and np.all(one[1] == pytest.approx(1.75 / 3))


def test_quantities_offer_decode_savings_only_where_decode_flops_were_kept() -> None:
    from dynamax_bench.reporting.statistics import quantities

    per_sample = make_cell("full", [1.0, 1.0])["per_sample"]
    assert "flops.decode_savings" in quantities(per_sample) and "flops.total_savings" in quantities(per_sample)
    older = {k: v for k, v in per_sample.items() if k not in ("flops.decode_full", "flops.decode_executed")}
    assert "flops.decode_savings" not in quantities(older) and "flops.total_savings" in quantities(older)


def test_samples_resample_by_their_group_and_one_group_resamples_to_itself() -> None:
    from dynamax_bench.reporting.statistics import groups_of

    cell = make_cell("full", [1.0, 0.0, 1.0, 0.0], ids=["a1", "a2", "b1", "b2"], groups=["a", "a", "b", "b"])
    assert groups_of(cell["per_sample"]).count == 2
    assert groups_of({"ids": ["x", "y", "z"]}).count == 3  # no groups named: one per sample
    one = Groups.of(["s", "s", "s"])
    found = estimate(lambda take: take(Ratio.mean([1.0, 0.0, 0.5])), one, IntervalSettings(0.95, 50, 0))
    assert (found.value, found.lo, found.hi, found.n, found.groups) == (0.5, 0.5, 0.5, 3, 1)
    ratios = {"x": Ratio.mean([1.0, 0.0, 0.5])}
    assert estimates(ratios, one, IntervalSettings(0.95, 50, 0))["x"].to_dict()["groups"] == 1
    with pytest.raises(ValueError, match=r"^per-sample list 'x' has 3 values for 2 samples$"):
        estimates(ratios, Groups.singletons(2), IntervalSettings(0.95, 50, 0))
    with pytest.raises(ValueError, match=r"^no samples to resample$"):
        estimate(lambda take: take(Ratio.mean([])), Groups.singletons(0), IntervalSettings(0.95, 50, 0))


def test_a_ratios_resamples_divide_sums_of_the_same_groups() -> None:
    """Per-token means: each resample sums numerators and denominators over the same drawn groups."""
    ratio = Ratio(np.array([4.0, 1.0, 9.0]), np.array([2.0, 1.0, 3.0]))  # per-sample 2, 1, 3; overall 14 / 6
    settings = IntervalSettings(0.95, 400, 3)
    found = estimate(lambda take: take(ratio), Groups.singletons(3), settings)
    assert found.value == pytest.approx(14 / 6) and 1.0 <= found.lo < found.value < found.hi <= 3.0
    weighted = estimate(lambda take: take(ratio), Groups.of(["a", "a", "b"]), settings)
    assert weighted.lo == pytest.approx(5 / 3) and weighted.hi == pytest.approx(3.0)  # group a alone: 5 / 3


def test_an_interval_includes_its_ends_and_settings_round_trip() -> None:
    from dynamax_bench.reporting.statistics import KIND, Estimate

    interval = Estimate(0.5, 0.25, 0.75, 10, 10)
    assert interval.includes(0.25) and interval.includes(0.75) and not interval.includes(0.2)
    settings = IntervalSettings(confidence=0.9, resamples=123, seed=4)
    assert settings.to_dict() == {"kind": KIND, "confidence": 0.9, "resamples": 123, "seed": 4}
    assert IntervalSettings.from_dict(settings.to_dict()) == settings
    assert math.isnan(Ratio(np.array([1.0]), np.array([0.0])).value())  # a ratio over nothing has no value


def test_lm_evals_stderr_needs_two_samples() -> None:
    assert lm_eval_stderr([1.0]) is None
    assert lm_eval_stderr([1.0, 0.0]) == pytest.approx(0.5)  # stdev 0.7071 / sqrt(2)
