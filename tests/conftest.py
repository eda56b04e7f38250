"""Shared fixtures: the smoke profile's tiny models, SmolLM2 prepared once per session, and one run of
the smoke DAG through a cluster executor that every test reading a whole run shares."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from dynamax_bench.backbones.prepare import Backbone, load_backbone, prepare_backbone  # noqa: E402
from dynamax_bench.config import REPO_ROOT  # noqa: E402
from dynamax_bench.profile_checks import load_profile  # noqa: E402

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
CLUSTER_PROFILE = REPO_ROOT / "tests" / "profiles" / "cluster-generic"
SMOKE_LOG = "snakemake.stderr"  # the main Snakemake process's log, in the smoke run's folder


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    """Two torch threads in one process; one per worker under pytest-xdist (`make test` runs `-n auto`)."""
    torch.set_num_threads(1 if "PYTEST_XDIST_WORKER" in os.environ else 2)


@pytest.fixture(scope="session")
def smoke_config() -> dict:
    return load_profile(REPO_ROOT / "config" / "smoke.yaml")


@pytest.fixture(scope="session")
def default_config() -> dict:
    return load_profile(REPO_ROOT / "config" / "default.yaml")


def _prepared(config: dict, name: str, root: Path) -> Backbone:
    """The profile's backbone; a distilled one at its random initialisation (training has its own tests)."""
    out = root / name
    if not out.exists():
        spec = copy.deepcopy(config["backbones"][name])
        if spec["source"]["kind"] == "distilled":
            teacher = config["backbones"][spec["source"]["teacher"]]["source"]
            spec["source"] = {"kind": "random", "architecture": spec["source"]["architecture"],
                              "config": spec["source"]["config"], "tokenizer": teacher["tokenizer"]}
        prepare_backbone(name, spec, out, seed=config["seed"], offline=True)
    return load_backbone(out)


@pytest.fixture(scope="session")
def backbone_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh folder, or DYNAMAX_TEST_BACKBONES: mutation testing (benchmarks/mutation.py) runs the tests
    once per mutant, and the seeded backbones it prepares once are the same every time."""
    kept = os.environ.get("DYNAMAX_TEST_BACKBONES")
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        return Path(kept)
    return tmp_path_factory.mktemp("backbones")


@pytest.fixture(scope="session")
def tiny_mistral(smoke_config: dict, backbone_root: Path) -> Backbone:
    return _prepared(smoke_config, "tiny_mistral", backbone_root)


@pytest.fixture(scope="session")
def tiny_mamba2(smoke_config: dict, backbone_root: Path) -> Backbone:
    return _prepared(smoke_config, "tiny_mamba2", backbone_root)


@pytest.fixture(scope="session")
def smollm2(default_config: dict, backbone_root: Path) -> Backbone:
    """SmolLM2-135M-Instruct, real pretrained weights (GGUF dequantised, about 25 s once)."""
    return _prepared(default_config, "smollm2", backbone_root)


@pytest.fixture
def config_copy(smoke_config: dict) -> dict:
    return copy.deepcopy(smoke_config)


def shared_data(name: str) -> Path:
    """A real dataset sample beside the checkout, or a skip saying why it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not present (the real dataset samples live in ../shared/data beside the checkout)")
    return path


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke profile end to end in a temporary folder, every job submitted through
    snakemake-executor-plugin-cluster-generic (tests/profiles/cluster-generic: one process per job,
    as on a cluster). One run for the session: the DAG's tests read it, none rebuilds it."""
    workdir = tmp_path_factory.mktemp("smoke")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "paper_tables/", "--snakefile", str(REPO_ROOT / "Snakefile"),
         "--directory", str(workdir), "--configfile", str(REPO_ROOT / "config" / "smoke.yaml"),
         "--profile", str(CLUSTER_PROFILE)],
        capture_output=True, text=True, cwd=REPO_ROOT,
    )
    (workdir / SMOKE_LOG).write_text(result.stderr)
    if result.returncode != 0:
        failed = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in (workdir / "logs" / "cluster").glob("*.log")
                           if "Error" in p.read_text())
        pytest.fail(f"smoke run through cluster-generic failed:\n{result.stderr[-4000:]}\n{failed[-6000:]}")
    return workdir
