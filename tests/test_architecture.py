"""The package's import graph: no cycles, and every arrow points down the DAG's stages.

Layers, bottom to top: the leaves every stage reads (profile, files, spec, runtime, provenance,
artefacts), backbones, the distillation corpus, the engine, the exit classifiers and their training
stages, generation (tasks, strategies, the generate rule), costs, calibration, reporting, then the
adapters on top (lm-eval, profile checks, data builders, the job plan). A module may import its own
layer or the ones below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from dynamax_bench.config import REPO_ROOT

PACKAGE = REPO_ROOT / "dynamax_bench"
LAYERS = [
    {"config", "errors", "files", "spec", "runtime", "provenance", "artefacts"},
    {"backbones"},
    {"corpus"},
    {"engine"},
    {"classifiers"},
    {"generation"},
    {"costs"},
    {"calibration"},
    {"reporting"},
    {"lmeval", "profile_checks", "data_checks", "data", "plan", "doctor"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Package modules imported anywhere in a file (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != "dynamax_bench":
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(files)) - {name} for name, path in files.items()}


def layer(module: str) -> int:
    stage = module.split(".")[1] if "." in module else module
    for index, names in enumerate(LAYERS):
        if stage in names:
            return index
    raise AssertionError(f"{module} belongs to no layer: add its stage to LAYERS in {__file__}")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycles() -> None:
    assert cycles(import_graph()) == []


def test_every_import_points_down_the_layers() -> None:
    upward = sorted(f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
                    if b != "dynamax_bench" and layer(b) > layer(a))
    assert upward == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
