"""Table files: what a reader sees for cells that a row does not have, estimates with their
intervals, paired differences, and the same bytes from the same cells."""

from __future__ import annotations

import math
import pkgutil
from pathlib import Path

import pandas as pd
import pytest

from dynamax_bench.files import write_json
from dynamax_bench.reporting import tables as tables_package
from dynamax_bench.reporting.paper_tables import TABLES, build_paper_tables
from dynamax_bench.reporting.tables.agreement import agreement_table
from dynamax_bench.reporting.tables.calibration import calibration_table, savings_at_targets, violations
from dynamax_bench.reporting.tables.main_results import main_results
from dynamax_bench.reporting.tables.policies import policy_ablation
from dynamax_bench.reporting.tables.pruning import pruning_comparison
from dynamax_bench.reporting.tables.render import write_table
from tests.cells import EVIDENCE, SETTINGS, make_cell, share


def test_missing_values_are_blank_not_nan(tmp_path: Path) -> None:
    df = pd.DataFrame([
        {"task": "triviaqa", "EM": 0.25, "n": 16},
        {"task": "truthfulqa", "bleu_max": 12.5, "n": 8},
    ])
    write_table(df, tmp_path, "t", "caption")
    markdown = (tmp_path / "t.md").read_text()
    assert "nan" not in markdown.lower()
    assert "| triviaqa   | 0.250 |  16 |            |" in markdown
    assert "| truthfulqa |       |   8 |     12.500 |" in markdown
    csv = pd.read_csv(tmp_path / "t.csv")
    assert csv.loc[0, "EM"] == 0.25 and math.isnan(csv.loc[1, "EM"])
    assert "nan" not in (tmp_path / "t.tex").read_text().lower()


def test_estimates_print_with_their_interval_and_keep_separate_columns_in_csv(tmp_path: Path) -> None:
    df = pd.DataFrame([
        {"method": "a", "EM": 0.672, "EM lo": 0.547, "EM hi": 0.781, "EM stderr": 0.06, "calm EM diff": 0.1,
         "calm EM diff lo": -0.02, "calm EM diff hi": 0.2, "n": 16},
        {"method": "b", "EM": 0.5, "EM lo": None, "EM hi": None, "EM stderr": None, "calm EM diff": None,
         "calm EM diff lo": None, "calm EM diff hi": None, "n": 16},
    ])
    write_table(df, tmp_path, "t", "caption")
    markdown = (tmp_path / "t.md").read_text()
    assert "0.672 [0.547, 0.781]" in markdown and "+0.100 [-0.020, +0.200]" in markdown
    assert " lo " not in markdown and "stderr" not in markdown
    assert "| b        | 0.500 " in markdown  # no interval: the value alone
    latex = (tmp_path / "t.tex").read_text()
    assert "0.672 [0.547, 0.781]" in latex and "stderr" not in latex
    csv = pd.read_csv(tmp_path / "t.csv")
    assert list(csv.columns) == list(df.columns)
    assert csv.loc[0, "EM lo"] == 0.547 and csv.loc[0, "EM stderr"] == 0.06


def main_cells() -> list[dict]:
    n = 12
    return [make_cell("full", share(n, n)),
            make_cell("prune4", share(3, n), savings=[0.4] * n),
            make_cell("ee-calm-copy-t0.9", share(9, n), savings=[0.3 + 0.02 * (i % 3) for i in range(n)]),
            make_cell("ee-calm-partial-t0.9", share(10, n), savings=[0.2] * n),
            make_cell("ee-calm-copy-p4", share(8, n), savings=[0.42] * n, threshold=0.55),
            make_cell("ee-calm-copy-c0.9", share(11, n), savings=[0.1] * n, threshold=0.97),
            make_cell("ee-mamba-copy-c0.9", share(n, n), certified=False)]


def test_main_results_carry_every_estimate_with_its_interval_and_n() -> None:
    cells = main_cells()
    df = main_results(cells)
    row = df[df["method"] == "ee-calm-copy-t0.9"].iloc[0]
    est = cells[2]["intervals"]["estimates"]
    for column, quantity in (("EM", "metrics.em"), ("consistency", "consistency.output_match"),
                             ("loops", "degeneration.loop_rate"), ("savings", "flops.total_savings"),
                             ("exitable tokens", "tokens.exitable_share"), ("mean layers", "layers.mean_executed")):
        assert (row[column], row[f"{column} lo"], row[f"{column} hi"]) == tuple(est[quantity][k] for k in ("value", "lo", "hi"))
    assert row["EM stderr"] == est["metrics.em"]["stderr"] and row["n"] == 12
    assert row["exitable tokens"] == 0.75  # 4 tokens per sample, the first from the prompt's forward
    assert (row["decode savings"], row["decode savings lo"]) == (est["flops.decode_savings"]["value"],
                                                                  est["flops.decode_savings"]["lo"])
    assert row["threshold"] == 0.9 and row["net"] == ""
    costly = main_results([make_cell("ee-maxsoftmax-copy-t0.9", share(12, 12), savings=[-0.5] * 12)]).iloc[0]
    assert costly["net"] == "costs more than it saves"


def test_pruning_and_policy_tables_show_paired_differences() -> None:
    cells = main_cells()
    [table4] = pruning_comparison(cells, SETTINGS).to_dict("records")  # the row calibrated to prune4's savings
    assert (table4["kind"], table4["threshold"], table4["reached"]) == ("calm", 0.55, "yes")
    assert table4["consistency diff"] == pytest.approx(8 / 12 - 3 / 12)
    assert table4["consistency diff lo"] > 0 and table4["n"] == 12
    assert table4["decode savings"] == pytest.approx(0.42) and table4["pruning decode savings"] == pytest.approx(0.4)
    table5 = policy_ablation(cells, SETTINGS).set_index("policy")  # typed-in thresholds only
    assert len(table5) == 2
    assert table5.loc["copy", "consistency diff"] == pytest.approx(9 / 12 - 10 / 12)
    assert table5.loc["copy", "decode savings diff"] == pytest.approx(0.32 - 0.2)
    assert math.isnan(table5.loc["partial", "consistency diff"])  # the reference itself


def test_calibration_tables_say_what_each_target_chose_and_delivered() -> None:
    cells = main_cells()
    calibrations = [{"backbone": "b", "task": "t", "epsilon": 0.05, "methods": {
        "calm": {"copy": {"consistency": {"0.9": {"thresholds_tested": 5, "reason": ""}},
                          "prune": {"4": {"decodes": [{}, {}], "reason": ""}}}},
        "mamba": {"copy": {"consistency": {"0.9": {"thresholds_tested": 1, "reason": "p = 0.4 > 0.05"}}}}}}]
    table = calibration_table(cells, calibrations).set_index(["kind", "target"])
    calm = table.loc[("calm", "consistency >= 0.9")]
    assert (calm["threshold"], calm["certified"], calm["violation"]) == (0.97, "yes", "no")
    assert calm["calibration"] == "5 thresholds tested" and calm["consistency"] == pytest.approx(11 / 12)
    mamba = table.loc[("mamba", "consistency >= 0.9")]
    assert (mamba["certified"], mamba["calibration"]) == ("no", "p = 0.4 > 0.05") and pd.isna(mamba["violation"])
    assert table.loc[("calm", "decode savings of prune4"), "calibration"] == "2 decodes"
    assert violations(calibration_table(cells, calibrations)) == {"certified": 1, "below_target": 0, "clearly_below": 0}
    below = [make_cell("ee-calm-copy-c0.9", share(6, 12), threshold=0.5)]
    assert violations(calibration_table(below, calibrations)) == {"certified": 1, "below_target": 1, "clearly_below": 1}
    [summary] = savings_at_targets(cells).to_dict("records")
    assert summary["calm"] == pytest.approx(0.1) and summary["mamba"] == 0.0  # not certified: runs as full


def test_agreement_table_reports_each_cells_batch_agreement_and_marks_the_reference_path() -> None:
    batched, reference = main_cells()[:2]
    batched["spec"].update(batch_size=16, prefix_cache=True)
    batched["agreement"] = {"rows": 12, "rows_with_near_ties": 3, "rows_redecoded": 3, "rows_differing": 1,
                            "tokens_differing": 2, "unexplained": 0, "differences": []}
    reference["spec"].update(batch_size=1, prefix_cache=False)
    table = agreement_table([reference, batched]).set_index("method")
    row = table.loc[batched["method"]]
    assert (row["path"], row["batch size"], row["prefix cache"]) == ("batched", 16, "yes")
    assert (row["rows"], row["rows with near ties"], row["rows changed by the batch"],
            row["tokens changed by the batch"], row["unexplained"]) == (12, 3, 1, 2, 0)
    assert table.loc[reference["method"], "path"] == "reference (batch 1)"
    assert math.isnan(table.loc[reference["method"], "rows"])


def test_paper_tables_from_the_same_cells_are_the_same_bytes(tmp_path: Path) -> None:
    paths = []
    for cell in main_cells():
        paths.append(tmp_path / "cells" / f"{cell['method']}.json")
        write_json(paths[-1], cell)
    run = {"profile": "hand", "config_hash": "0", "device": "cpu", "dtype": "float32", "threads": 1}
    for out in ("one", "two"):
        build_paper_tables(run, paths, tmp_path / out, EVIDENCE)
    for name in ("table3_main_results.csv", "table4_ee_vs_pruning.md", "table5_policy_ablation.tex",
                 "table6_claims.md", "table6_claims_comparisons.csv", "table7_batch_agreement.md"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    claims = pd.read_csv(tmp_path / "one" / "table6_claims.csv")
    assert set(claims["verdict"]) <= {"holds", "fails", "equivalent", "inconclusive", "not competent"}
    assert {"claim", "backbone", "verdict", "margin", "comparisons"} <= set(claims.columns)
    comparisons = pd.read_csv(tmp_path / "one" / "table6_claims_comparisons.csv")
    assert {"A - B diff", "A - B diff lo", "A - B diff hi", "n", "groups", "p", "Holm level", "margin"} <= set(
        comparisons.columns)
    pruning = comparisons.set_index("claim").loc["pruning"]
    assert pruning["verdict"] == "holds" and pruning["A"].startswith("best of 1 EE (calm)")
    assert "percentile bootstrap" in (tmp_path / "one" / "index.md").read_text()


def test_every_table_module_is_registered_once() -> None:
    """A table module that `paper_tables.TABLES` does not list would never be written."""
    modules = {m.name for m in pkgutil.iter_modules(tables_package.__path__)} - {"render"}
    registered = [build.__module__.rsplit(".", 1)[1] for build in TABLES]
    assert sorted(registered) == sorted(modules)


def test_tradeoff_panel_puts_far_left_points_on_its_edge_with_their_value() -> None:
    import matplotlib.pyplot as plt

    from dynamax_bench.reporting.figures import LEFT_EDGE, _mark_offscale

    fig, ax = plt.subplots()
    drawn = [(-2.315, 1.0, "tab:purple", "spec-e24-k2"), (-0.798, 0.984, "tab:brown", "maxsoftmax"),
             (0.1, 0.5, "tab:blue", "calm")]
    for x, y, color, _ in drawn:
        ax.plot(x, y, marker="o", color=color)
    _mark_offscale(ax, drawn)
    assert ax.get_xlim()[0] == LEFT_EDGE and ax.get_xlim()[1] > 0.1
    labels = {text.get_text(): text.xyann[1] for text in ax.texts}
    assert set(labels) == {"spec-e24-k2 -2.31", "maxsoftmax -0.80"}
    assert labels["maxsoftmax -0.80"] < labels["spec-e24-k2 -2.31"]  # stacked below, not printed over it
    plt.close(fig)
