"""The DAG is tidy: lint-clean, and a dry run of every profile plans every rule, offline; the paper
profile's dry run goes through the Slurm profile and shows what each rule asks Slurm for."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yte

from dynamax_bench.config import REPO_ROOT, distilled_backbones, load_config
from dynamax_bench.plan import Plan
from dynamax_bench.spec import baseline_methods, ee_methods, parse_method

SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO_ROOT / "Snakefile")]
SLURM_PROFILE = REPO_ROOT / "profiles" / "slurm"
SLURM_ENV = {"DYNAMAX_SLURM_ACCOUNT": "dynamax_acct", "DYNAMAX_SLURM_PARTITION": "dynamax_part",
             "DYNAMAX_SLURM_GPU_MODEL": "h100"}
GPU_RULES = {"generate", "generate_sweep", "latency", "latency_sweep", "extract_oracle", "select_top_k", "distill",
             "exit_weight_ablation", "calibrate", "generate_calibrated_mistral7b",
             "generate_calibrated_codestral_mamba7b"}  # run a model on every CUDA profile
CPU_RULES = {"prepare_backbone", "prepare_corpus", "flops", "score", "score_sweep", "score_calibrated_mistral7b",
             "score_calibrated_codestral_mamba7b", "paper_tables"}  # paper profile


def run(args: list[str], workdir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # from the checkout, so that a profile's `configfile:` resolves as it does for a user
    return subprocess.run([*SNAKEMAKE, "--directory", str(workdir), *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, env={**os.environ, **(env or {})})


def planned_outputs(dry_run: str, rule: str) -> list[list[str]]:
    """The output files of each job of `rule` in a dry run's plan."""
    return [block.group(1).split(", ") for block in
            re.finditer(rf"^(?:local)?rule {rule}:\n(?:    .*\n)*?    output: (.*)$", dry_run, re.M)]


def workflow_rules(tmp_path: Path, profile: str) -> set[str]:
    """The rules of the DAG under a profile (generation.baseline_jobs: per_task adds one baselines rule
    per backbone for generating and for scoring)."""
    result = run(["--list-rules", "--configfile", str(REPO_ROOT / "config" / f"{profile}.yaml")], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return {m.group(1) for line in result.stdout.splitlines() if (m := re.match(r"^([a-z_0-9]+)\b", line))}


@pytest.fixture(scope="module")
def paper_on_slurm(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Dry run of the paper profile with profiles/slurm: nothing is submitted, no sbatch is needed."""
    result = run(["paper_tables/", "-n", "--profile", str(SLURM_PROFILE)], tmp_path_factory.mktemp("slurm"), SLURM_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def planned_resources(dry_run: str) -> dict[str, list[dict[str, str]]]:
    """Rule -> the `resources:` of each of its planned jobs, as Snakemake prints them."""
    jobs: dict[str, list[dict[str, str]]] = {}
    for block in re.split(r"\n(?=\[)", dry_run):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        resources = re.search(r"^\s+resources: (.*)$", block, re.M)
        if rule and resources:
            jobs.setdefault(rule.group(1), []).append(dict(kv.split("=", 1) for kv in resources.group(1).split(", ")))
    return jobs


def test_lint_is_clean(tmp_path: Path) -> None:
    result = run(["--lint"], tmp_path)
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr, result.stdout[-3000:]


@pytest.mark.parametrize("profile", ["default", "smoke", "paper"])
def test_dry_run_plans_every_rule(tmp_path: Path, profile: str, request: pytest.FixtureRequest) -> None:
    """No network needed: the paper profile's hub backbones and datasets are only planned."""
    # `all` is the default target itself; `check` runs on demand, not for paper_tables/; `unknown_target`
    # only matches a path the profile does not have; the calibration rules only where thresholds are calibrated;
    # `train_backbone` only where a backbone is trained by the pipeline (not the paper's hub models);
    # `generate` and `score` only for a cell the profile does not list where its baselines are grouped, and
    # for each self-speculative row (`methods.speculative`: one job per cell, at batch 1)
    config = load_config(REPO_ROOT / "config" / f"{profile}.yaml")
    expected = workflow_rules(tmp_path / "rules", profile) - {"all", "check", "unknown_target"}
    plan = Plan(config)
    if not plan.calibrations():
        expected -= {r for r in expected if r == "calibrate" or r.startswith(("generate_calibrated_", "score_calibrated_"))}
    if not distilled_backbones(config):
        expected -= {"train_backbone"}
    if config["generation"]["baseline_jobs"] == "per_task" and not any(map(plan.speculative_methods, plan.backbones)):
        expected -= {"generate", "score"}
    if profile == "paper":
        stdout = request.getfixturevalue("paper_on_slurm")
    else:
        result = run(["paper_tables/", "-n", "--configfile", str(REPO_ROOT / "config" / f"{profile}.yaml")], tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        stdout = result.stdout
    planned = set(re.findall(r"^(?:localrule|rule) ([a-z_0-9]+):", stdout, flags=re.M))
    assert planned == expected, f"not planned: {sorted(expected - planned)}; unexpected: {sorted(planned - expected)}"


def test_slurm_profile_asks_a_gpu_for_model_rules_and_cpus_for_the_rest(paper_on_slurm: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = planned_resources(paper_on_slurm)
    for key, value in SLURM_ENV.items():
        monkeypatch.setenv(key, value)
    # set-resources as Snakemake reads the profile (YTE rendered in the same environment)
    expected = yte.process_yaml((SLURM_PROFILE / "config.v8+.yaml").read_text(), require_use_yte=True)["set-resources"]
    assert GPU_RULES | CPU_RULES == set(jobs), sorted(jobs)
    for rule, planned in jobs.items():
        for resources in planned:
            # the profile's values reach every job, with the account and partition of the environment
            for key, value in expected[rule].items():
                assert resources.get(key) == str(value), (rule, key, resources)
            assert (resources["slurm_account"], resources["slurm_partition"]) == ("dynamax_acct", "dynamax_part")
            if rule in GPU_RULES:
                assert resources["gpu"] == "1" and resources["gpu_model"] == "h100", (rule, resources)
                assert int(resources["cpus_per_gpu"]) >= 1 and "cpus_per_task" not in resources
            else:
                assert resources.get("gpu", "0") == "0" and "gpu_model" not in resources, (rule, resources)
            assert int(resources["mem_mb"]) > 0 and int(resources["runtime"]) > 0


def smoke_dry_run(tmp_path: Path, generation: str) -> subprocess.CompletedProcess:
    """Dry run of the smoke profile with one `generation` setting changed (e.g. "ee_jobs: per_kind")."""
    override = tmp_path / "override.yaml"
    override.write_text(f"generation: {{{generation}}}\n")
    result = run(["paper_tables/", "-n", "--configfile", str(REPO_ROOT / "config" / "smoke.yaml"), str(override)],
                 tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize("ee_jobs", ["per_kind", "per_policy"])
def test_each_ee_cell_comes_from_one_sweep_job_of_the_size_ee_jobs_names(tmp_path: Path, ee_jobs: str) -> None:
    """`generation.ee_jobs` only regroups the decoding: every ee cell of the profile is made by
    exactly one generate_sweep job, which holds every threshold of one exit kind and policy
    (per_kind) or every kind and threshold of one policy (per_policy), on one backbone and task;
    a score_sweep job scores the cells of each, and no other job does."""
    config = load_config(REPO_ROOT / "config" / "smoke.yaml")
    result = smoke_dry_run(tmp_path, f"ee_jobs: {ee_jobs}")
    sweeps = planned_outputs(result.stdout, "generate_sweep")
    kinds, thresholds = config["classifiers"]["kinds"], config["classifiers"]["thresholds"]
    ee_tasks = [t for t, spec in config["tasks"].items() if spec["early_exit"]]
    cells = [f"{b}/{t}/{m}" for b in config["backbones"] for t in ee_tasks for m in ee_methods(config, b)]
    made = [str(Path(p).relative_to("results/smoke/generations").with_suffix("")) for outputs in sweeps for p in outputs]
    assert sorted(made) == sorted(cells)  # each cell once
    scored = [[str(Path(p).relative_to("results/smoke/cells").with_suffix("")) for p in outputs]
              for outputs in planned_outputs(result.stdout, "score_sweep")]
    assert sorted(map(sorted, scored)) == sorted(
        sorted(str(Path(p).relative_to("results/smoke/generations").with_suffix("")) for p in outputs)
        for outputs in sweeps)
    assert not any(Path(p).name.startswith("ee-") for outputs in planned_outputs(result.stdout, "score") for p in outputs)
    for outputs in sweeps:
        methods = [parse_method(Path(p).stem) for p in outputs]
        assert len({Path(p).parent for p in outputs}) == 1 and len({m.policy for m in methods}) == 1
        per_job = len(thresholds) * (len(kinds) if ee_jobs == "per_policy" else 1)
        assert len(methods) == per_job and len({m.exit_kind for m in methods}) == per_job // len(thresholds)


@pytest.mark.parametrize("baseline_jobs", ["per_method", "per_task"])
def test_each_baseline_cell_comes_from_one_job_of_the_size_baseline_jobs_names(tmp_path: Path,
                                                                               baseline_jobs: str) -> None:
    """`generation.baseline_jobs` only regroups the decoding: every baseline cell (full, prune<N>,
    oracle) is made by exactly one job, which holds one method (per_method: `generate`) or every
    baseline of one backbone on one task (per_task: `generate_baselines_<backbone>`); its scoring job
    holds the same cells, and no other job makes or scores them."""
    config = load_config(REPO_ROOT / "config" / "smoke.yaml")
    result = smoke_dry_run(tmp_path, f"baseline_jobs: {baseline_jobs}")
    baselines = {b: baseline_methods(spec, config["methods"]["oracle"]) for b, spec in config["backbones"].items()}
    cells = sorted(f"{b}/{t}/{m}" for b in baselines for t in config["tasks"] for m in baselines[b])

    def jobs(rule: str, stage: str) -> list[list[str]]:
        root = f"results/smoke/{stage}"
        return [sorted(str(Path(p).relative_to(root).with_suffix("")) for p in outputs)
                for outputs in planned_outputs(result.stdout, rule)]

    if baseline_jobs == "per_task":
        made = [job for b in baselines for job in jobs(f"generate_baselines_{b}", "generations")]
        scored = [job for b in baselines for job in jobs(f"score_baselines_{b}", "cells")]
        assert not planned_outputs(result.stdout, "generate") and not planned_outputs(result.stdout, "score")
        assert sorted(made) == sorted(sorted(f"{b}/{t}/{m}" for m in baselines[b])
                                      for b in baselines for t in config["tasks"])
    else:
        made, scored = jobs("generate", "generations"), jobs("score", "cells")
        assert all(len(job) == 1 for job in made)
        assert not re.search(r"^rule (generate|score)_baselines_", result.stdout, re.M)
    assert sorted(c for job in made for c in job) == cells  # each baseline cell once
    assert sorted(scored) == sorted(made)
