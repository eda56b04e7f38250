"""Provenance names the version of every package whose code touches a number of an output."""

from __future__ import annotations

import ast
import sys
from importlib.metadata import packages_distributions
from importlib.util import find_spec

from packaging.utils import canonicalize_name

from dynamax_bench.config import REPO_ROOT
from dynamax_bench.provenance import OPTIONAL_PACKAGES, PACKAGES, package_versions

# Imported by the package, but no number of an output depends on their version: profile reading and
# validation, progress bars, downloads from the hub (their files are hashed where they are used).
NO_NUMBERS = {"pyyaml", "jsonschema", "tqdm", "huggingface-hub"}


def imported_distributions() -> set[str]:
    """The installed distributions whose top-level modules dynamax_bench imports anywhere."""
    modules = set()
    for path in (REPO_ROOT / "dynamax_bench").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    owners = packages_distributions()
    return {canonicalize_name(d) for m in modules - set(sys.stdlib_module_names) - {"dynamax_bench"}
            for d in owners.get(m, [])}


def test_every_imported_package_that_touches_a_number_is_recorded() -> None:
    recorded = {canonicalize_name(p) for p in PACKAGES + OPTIONAL_PACKAGES}
    missing = imported_distributions() - recorded - NO_NUMBERS
    assert not missing, f"add {sorted(missing)} to dynamax_bench/provenance.py PACKAGES (or to NO_NUMBERS here, saying why)"


def test_versions_of_the_recorded_packages_are_installed_ones() -> None:
    versions = package_versions()
    assert [name for name in PACKAGES if versions[name] == "not installed"] == []
    for name in OPTIONAL_PACKAGES:  # the fused Mamba-2 kernels: recorded where installed (CUDA boxes)
        assert (name in versions) == (find_spec(name.replace("-", "_")) is not None), name
