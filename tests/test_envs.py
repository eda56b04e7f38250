"""The pinned environments agree with pyproject.toml: every dependency is there, at a version the
project's range allows."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from dynamax_bench.config import REPO_ROOT

CONDA_NAMES = {"torch": ("pytorch", "pytorch-gpu", "pytorch-cpu")}  # conda-forge's names for a PyPI name


def project_requirements(extras: tuple[str, ...] = ("test",)) -> list[Requirement]:
    meta = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"])
    for extra in extras:
        reqs += meta["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def env_pins(name: str) -> dict[str, str]:
    """Package -> pin text ('==1.2', '=1.2' or a range) from a conda env file, pip section included."""
    env = yaml.safe_load((REPO_ROOT / "envs" / name).read_text())
    pins: dict[str, str] = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            if item.startswith("-"):
                continue
            m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", item)
            pins[canonicalize_name(m.group(1))] = m.group(2).strip()
    return pins


def pinned_version(pin: str) -> Version | None:
    m = re.fullmatch(r"==?([0-9][^,<>=!]*)", pin)
    return Version(m.group(1)) if m else None


@pytest.mark.parametrize("env, extras", [("cpu.yaml", ("test", "cluster")), ("cuda.yaml", ("test", "gpu", "cluster"))])
def test_env_pins_every_dependency_within_the_project_range(env: str, extras: tuple[str, ...]) -> None:
    pins = env_pins(env)
    for req in project_requirements(extras):
        names = [canonicalize_name(req.name), *CONDA_NAMES.get(canonicalize_name(req.name), ())]
        present = [n for n in names if n in pins]
        assert present, f"envs/{env} lacks {req.name} ({req}) from pyproject.toml"
        version = pinned_version(pins[present[0]])
        if version is not None:
            assert version in req.specifier, f"envs/{env} pins {present[0]} {version}, outside pyproject's {req}"


def test_gpu_env_has_the_fused_mamba_kernels_and_cpu_env_has_none() -> None:
    assert {"mamba-ssm", "causal-conv1d"} <= set(env_pins("cuda.yaml"))
    assert not {"mamba-ssm", "causal-conv1d"} & set(env_pins("cpu.yaml"))



def test_torch_and_the_kernels_are_pinned_exactly() -> None:
    """The fused kernels link against one torch: an open torch range lets the solver pick another."""
    cuda, cpu = env_pins("cuda.yaml"), env_pins("cpu.yaml")
    for name in ("pytorch-gpu", "mamba-ssm", "causal-conv1d"):
        assert pinned_version(cuda[name]) is not None, f"envs/cuda.yaml: {name} {cuda[name]!r} is not an exact pin"
    assert pinned_version(cpu["torch"]) is not None, f"envs/cpu.yaml: torch {cpu['torch']!r} is not an exact pin"
