"""The DAG is tidy: lint-clean, and a dry run of every profile plans every rule, offline."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from dynamax_bench.config import REPO_ROOT, distilled_backbones, load_config

SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO_ROOT / "Snakefile")]


def run(args: list[str], workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, "--directory", str(workdir), *args], capture_output=True, text=True)


def rules_of_the_workflow(workdir: Path) -> set[str]:
    result = run(["--list-rules"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return {m.group(1) for line in result.stdout.splitlines() if (m := re.match(r"^([a-z_]+)\b", line))}


def test_lint_is_clean(tmp_path: Path) -> None:
    result = run(["--lint"], tmp_path)
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr, result.stdout[-3000:]


@pytest.mark.parametrize("profile", ["default", "smoke", "paper"])
def test_dry_run_plans_every_rule(tmp_path: Path, profile: str) -> None:
    """No network needed: the paper profile's hub backbones and datasets are only planned."""
    # `all` is the default target itself; `check` runs on demand, not for paper_tables/;
    # `train_backbone` only where a backbone is trained by the pipeline (not the paper's hub models)
    expected = rules_of_the_workflow(tmp_path) - {"all", "check"}
    if not distilled_backbones(load_config(REPO_ROOT / "config" / f"{profile}.yaml")):
        expected -= {"train_backbone"}
    result = run(["paper_tables/", "-n", "--configfile", str(REPO_ROOT / "config" / f"{profile}.yaml")], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    planned = set(re.findall(r"^(?:localrule|rule) ([a-z_]+):", result.stdout, flags=re.M))
    assert planned == expected, f"not planned: {sorted(expected - planned)}; unexpected: {sorted(planned - expected)}"
