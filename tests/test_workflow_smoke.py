"""The smoke profile end to end through Snakemake and a cluster executor (the session's `smoke_run`,
tests/conftest.py), in a temporary working directory."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dynamax_bench.config import REPO_ROOT
from dynamax_bench.files import read_json
from dynamax_bench.spec import parse_method
from tests.conftest import SMOKE_LOG


@pytest.mark.slow
def test_every_job_went_through_the_executor_as_its_own_process(smoke_run: Path) -> None:
    """Every job was submitted to cluster-generic, each ran in a process of its
    own (the external id is that process's pid) and finished there. That its cells are a local run's:
    test_ci_gate_passes_against_the_committed_reference (values of a local run, reference/smoke.json)
    and test_rerun_gives_identical_cells (bytes of a local rerun)."""
    log = (smoke_run / SMOKE_LOG).read_text()
    jobs = {int(j): r for r, j in re.findall(r"^rule (\w+):\n(?:    .*\n)*?    jobid: (\d+)$", log, re.M)}
    submitted = {int(j): int(pid) for j, pid in re.findall(r"^Submitted job (\d+) with external jobid '(\d+)'", log, re.M)}
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", log.split("Job stats:")[1].split("\n\n")[0], re.M))
    assert len(jobs) == int(stats["total"]) == 46  # paper_tables/ is a rule's output: no `all` job
    assert set(submitted) == set(jobs)
    assert len(set(submitted.values())) == len(submitted)
    for jobid, rule in jobs.items():
        job_log = (smoke_run / "logs" / "cluster" / f"snakejob.{rule}.{jobid}.log").read_text()
        assert "1 of 1 steps (100%) done" in job_log, (rule, jobid, job_log[-2000:])


@pytest.mark.slow
def test_tables_equal_their_cells(smoke_run: Path) -> None:
    rows = list(csv.DictReader(open(smoke_run / "paper_tables" / "table3_main_results.csv")))
    cells = sorted((smoke_run / "results" / "smoke" / "cells").rglob("*.json"))
    # 2 backbones x (TriviaQA: full, prune0/4, oracle + 3 kinds x 2 policies + 5 calibrated rows; 2 more tasks:
    # 4 baselines)
    assert len(rows) == len(cells) == 2 * (10 + 5 + 2 * 4)
    by_key = {(r["backbone"], r["task"], r["method"]): r for r in rows}
    for path in cells:
        cell = read_json(path)
        row = by_key[(cell["backbone"], cell["task"], cell["method"])]
        for metric, value in cell["metrics"].items():
            column = metric.upper() if len(metric) <= 3 else metric
            assert float(row[column]) == pytest.approx(value, abs=1e-6), (path, metric)
        assert float(row["consistency"]) == pytest.approx(cell["consistency"]["output_match"], abs=1e-6)
        assert float(row["mean layers"]) == pytest.approx(cell["layers"]["mean_executed"], abs=1e-5)
        interval = cell["intervals"]["estimates"]["consistency.output_match"]
        assert (float(row["consistency lo"]), float(row["consistency hi"])) == pytest.approx((interval["lo"], interval["hi"]))
        assert int(row["n"]) == interval["n"] == len(cell["per_sample"]["ids"])


@pytest.mark.slow
def test_every_table_and_figure_is_written(smoke_run: Path) -> None:
    out = smoke_run / "paper_tables"
    for stem in ("table1_setup", "table2_distillation", "table2c_exit_weights", "table3_main_results",
                 "table4_ee_vs_pruning", "table5_policy_ablation", "table6_claims", "table6_claims_comparisons",
                 "table7_batch_agreement", "table8_calibration", "table9_savings_at_targets"):
        for ext in ("md", "csv", "tex"):
            assert (out / f"{stem}.{ext}").stat().st_size > 100, f"{stem}.{ext}"
    for stem in ("figure1_tradeoff_tiny_mistral", "figure1_tradeoff_tiny_mamba2", "figure2_exit_histograms",
                 "figure3_measured_vs_predicted"):
        for ext in ("png", "pdf"):
            assert (out / f"{stem}.{ext}").stat().st_size > 1000, f"{stem}.{ext}"
    index = (out / "index.md").read_text()
    assert "config hash" in index and "git commit" in index and "hardware" in index
    trained = read_json(smoke_run / "resources" / "backbones" / "tiny_mamba2" / "dynamax_backbone.json")["training"]
    assert f"held-out perplexity {trained['heldout']['student_perplexity']:.1f}" in index


@pytest.mark.slow
def test_savings_in_the_tables_equal_the_cells_and_full_saves_nothing(smoke_run: Path) -> None:
    rows = list(csv.DictReader(open(smoke_run / "paper_tables" / "table3_main_results.csv")))
    for row in rows:
        cell = read_json(smoke_run / "results" / "smoke" / "cells" / row["backbone"] / row["task"] / f"{row['method']}.json")
        total = cell["intervals"]["estimates"]["flops.total_savings"]
        assert float(row["savings"]) == pytest.approx(total["value"], abs=1e-6)
        if row["decode savings"]:
            assert float(row["decode savings"]) == pytest.approx(cell["flops"]["decode_savings"], abs=1e-6)
        if row["method"] in ("full", "prune0") or parse_method(row["method"]).target == "consistency" and \
                not cell["spec"]["method"]["certified"]:  # a target no threshold certified runs as full
            assert total["value"] == total["lo"] == total["hi"] == 0.0


@pytest.mark.slow
def test_distillation_table_equals_the_classifier_files(smoke_run: Path) -> None:
    rows = list(csv.DictReader(open(smoke_run / "paper_tables" / "table2_distillation.csv")))
    metas = sorted((smoke_run / "results" / "smoke" / "classifiers").rglob("*.json"))
    # calm and mamba at the chosen k, and calm (the probe) at the 3 other candidates, on two backbones, four exits
    assert len(metas) == 4 and len(rows) == 2 * (2 + 3) * 4
    for path in metas:
        meta = read_json(path)
        assert meta["training"]["top_k"] == read_json(smoke_run / "results" / "smoke" / "top_k" / f"{meta['backbone']}.json")["chosen"]
        for layer in meta["exit_positions"]:
            row = next(r for r in rows if (r["backbone"], r["kind"], int(r["top-k"]), int(r["exit layer"])) ==
                       (meta["backbone"], meta["kind"], meta["training"]["top_k"], layer))
            assert float(row["F1"]) == pytest.approx(meta["test"]["exits"][str(layer)]["f1"], abs=1e-6)
            assert row["k choice"] == "chosen"
    choice = list(csv.DictReader(open(smoke_run / "paper_tables" / "table2b_top_k_choice.csv")))
    assert len(choice) == 2 * 4 * 1  # two backbones, four candidates, one threshold
    for name in ("figure2_exit_histograms.png", "figure2_exit_histograms.pdf"):
        assert (smoke_run / "paper_tables" / name).stat().st_size > 1000


@pytest.mark.slow
def test_every_heavy_stage_leaves_its_timing(smoke_run: Path) -> None:
    """Stage times in REPRODUCING.md come from Snakemake's `benchmark:` files: one per job."""
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    from stage_times import markdown_table, read_benchmarks

    jobs = read_benchmarks(smoke_run / "resources") + read_benchmarks(smoke_run / "results" / "smoke")
    counts = {rule: sum(job.rule == rule for job in jobs) for rule in {job.rule for job in jobs}}
    generations = sorted((smoke_run / "results" / "smoke" / "generations").rglob("*.jsonl"))
    # the smoke profile's generation.ee_jobs is per_policy: one sweep per backbone, task and policy;
    # its baseline_jobs is per_task: one job per backbone and task for its baselines; all time under generate/
    # the calibrated rows of a backbone, task and policy are one more generate job
    ee = [(g.parent, parse_method(g.stem)) for g in generations if g.name.startswith("ee-")]
    sweeps = {(parent, m.policy) for parent, m in ee if not m.calibrated}
    calibrated = {(parent, m.policy) for parent, m in ee if m.calibrated}
    assert counts["generate"] == len({g.parent for g in generations}) + len(sweeps) + len(calibrated)
    assert len(sweeps) > 0 and len(calibrated) > 0
    assert counts["calibrate"] == len({parent for parent, _ in calibrated})
    assert counts["train_backbone"] == counts["prepare_corpus"] == 1
    assert counts["extract_oracle"] == 2 and counts["distill"] == 4
    # latency: one job for `full` and one sweep per backbone and policy (latency.policies: first)
    timed = list((smoke_run / "results" / "smoke" / "latency").rglob("*.json"))
    assert counts["latency"] == len({(p.parent, p.stem if p.stem == "full" else parse_method(p.stem).policy)
                                     for p in timed}) == 4
    assert all(job.seconds > 0 for job in jobs)
    assert "| generate |" in markdown_table(jobs)


@pytest.mark.slow
def test_invariants_hold_in_the_cells(smoke_run: Path) -> None:
    for backbone in ("tiny_mistral", "tiny_mamba2"):
        cells = smoke_run / "results" / "smoke" / "cells" / backbone / "triviaqa"
        full, prune0, oracle = (read_json(cells / f"{m}.json") for m in ("full", "prune0", "oracle"))
        assert prune0["metrics"] == full["metrics"] and prune0["consistency"]["output_match"] == 1.0
        assert oracle["consistency"]["output_match"] == 1.0
        assert oracle["layers"]["mean_executed"] <= full["layers"]["mean_executed"]


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["tiny_mistral/triviaqa/oracle.json", "tiny_mamba2/triviaqa/ee-mamba-skip-t0.5.json"])
def test_rerun_gives_identical_cells(smoke_run: Path, cell: str) -> None:
    """Retraining the classifiers, regenerating and rescoring with the local executor gives the bytes
    the cluster executor's jobs wrote (seeded, CPU): a local run and an executor run agree exactly."""
    cell = Path("results/smoke/cells") / cell
    before = (smoke_run / cell).read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", str(cell), "--cores", "2", "--forcerun", "distill", "generate_sweep",
         "generate_baselines_tiny_mistral",
         "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory", str(smoke_run),
         "--configfile", str(REPO_ROOT / "config" / "smoke.yaml")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (smoke_run / cell).read_bytes() == before


@pytest.mark.slow
def test_html_report_carries_the_tables_and_figures(smoke_run: Path) -> None:
    report = smoke_run / "report.html"
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "paper_tables/", "--report", str(report),
         "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory", str(smoke_run),
         "--configfile", str(REPO_ROOT / "config" / "smoke.yaml")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    html = report.read_text(errors="replace")
    assert "table3_main_results" in html and "figure2_exit_histograms" in html


@pytest.mark.slow
def test_ci_gate_passes_against_the_committed_reference(smoke_run: Path) -> None:
    """The `check` rule: this run against reference/smoke.json, within its tolerances."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "results/smoke/check.txt", "--cores", "1",
         "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory", str(smoke_run),
         "--configfile", str(REPO_ROOT / "config" / "smoke.yaml")],
        capture_output=True, text=True,
    )
    report = smoke_run / "results" / "smoke" / "check.txt"
    log = (smoke_run / "logs" / "smoke" / "check.log").read_text()
    assert result.returncode == 0 and report.exists(), log[-6000:]
    assert " 0 outside" in report.read_text()


@pytest.mark.slow
def test_ci_gate_catches_an_off_by_one_engine(smoke_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deliberately broken engine (pruning keeps one layer too many) makes the check fail,
    and the table names the cell and the field that moved."""
    from dynamax_bench.engine import Strategy
    from dynamax_bench.generation.generate import generate_cell
    from dynamax_bench.profile_checks import load_profile
    from dynamax_bench.reporting.check import compare, format_table, load_reference, read_cells
    from dynamax_bench.reporting.score import score_cell
    from dynamax_bench.reporting.statistics import IntervalSettings
    from dynamax_bench.spec import decode_spec, task_spec

    results = tmp_path / "results"
    shutil.copytree(smoke_run / "results" / "smoke", results)
    monkeypatch.setattr(Strategy, "prune", classmethod(lambda cls, n, dropped: cls(keep_layers=n - dropped + 1)))
    config = load_profile(REPO_ROOT / "config" / "smoke.yaml")
    backbone = smoke_run / "resources" / "backbones" / "tiny_mistral"
    cell = "tiny_mistral/triviaqa/prune4"
    generations = results / "generations" / f"{cell}.jsonl"
    tasks = task_spec(config, "triviaqa")
    generate_cell(decode_spec(config, "tiny_mistral", "triviaqa", "prune4"), tasks, backbone, generations)
    score_cell(tasks, generations, results / "generations" / "tiny_mistral" / "triviaqa" / "full.jsonl", backbone,
               results / "flops" / "tiny_mistral.json", results / "cells" / f"{cell}.json", profile="smoke",
               evidence=IntervalSettings.from_dict(config["evidence"]))
    rows = compare(read_cells(results), load_reference(REPO_ROOT / "reference" / "smoke.json"))
    failed = [r for r in rows if not r.passed]
    assert failed and {r.cell for r in failed} == {cell}
    assert "layers.mean_executed" in {r.path for r in failed}
    assert "FAIL" in format_table(rows)


def planned_rules(smoke_run: Path, overrides: dict) -> set[str]:
    """Rules a dry run of paper_tables/ would rerun on the finished smoke run with the smoke profile
    changed by `overrides` (a second config file: `--config` would pass nested values as strings)."""
    changed = smoke_run / "override.yaml"
    changed.write_text(yaml.safe_dump(overrides))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "paper_tables/", "-n", "--snakefile", str(REPO_ROOT / "Snakefile"),
         "--directory", str(smoke_run), "--configfile", str(REPO_ROOT / "config" / "smoke.yaml"), str(changed),
         "--rerun-triggers", "params"],  # params alone: earlier tests touch files
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return set(re.findall(r"^(?:localrule|rule) ([a-z_0-9]+):", result.stdout, flags=re.M))


@pytest.mark.slow
def test_a_setting_reruns_exactly_the_jobs_that_read_it(smoke_run: Path) -> None:
    """Rule params hold everything a script reads: a dtype change reaches the oracle pass and the
    decoding (the oracle pass, the top-k choice and distillation train on its hidden states), a
    repetition-penalty change only the decoding; neither rebuilds backbones, corpus or FLOPs."""
    # Other tests of this module rerun jobs in the same folder (test_rerun_gives_identical_cells
    # rewrites a classifier file, which leaves paper_tables outdated): compare with the plan of an
    # unchanged setting, which must not plan any job that decodes.
    baseline = planned_rules(smoke_run, {"seed": 1234})
    assert baseline <= {"paper_tables"}
    decoding = {"generate_sweep", "score_sweep", "latency", "latency_sweep", "paper_tables", "calibrate"} | {
        f"{rule}_{group}_{backbone}" for rule in ("generate", "score") for group in ("baselines", "calibrated")
        for backbone in ("tiny_mistral", "tiny_mamba2")}
    # bfloat16 decodes on the reference path (the batched engine's bounds are float32's: spec.py)
    dtype = planned_rules(smoke_run, {"runtime": {"dtype": "bfloat16"},
                                      "generation": {"batch_size": 1, "prefix_cache": False}})
    assert dtype == baseline | decoding | {"extract_oracle", "select_top_k", "distill", "exit_weight_ablation"}
    penalty = planned_rules(smoke_run, {"generation": {"repetition_penalty": 1.3}})
    assert penalty == baseline | decoding
