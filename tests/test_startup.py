"""Start-up cost of the DAG's processes: the Snakefile, parsed by every Snakemake process (one per
job under a cluster executor), and the rules that run no model import neither torch nor transformers."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from dynamax_bench.classifiers.kinds import ExitClassifier
from dynamax_bench.classifiers.registry import BUILTIN_METHODS, EXIT_METHODS
from dynamax_bench.config import REPO_ROOT

MODEL_LIBRARIES = {"torch", "transformers", "lm_eval", "matplotlib"}


def modules_after(code: str) -> set[str]:
    """Top-level packages a fresh interpreter has imported after running `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stdout.splitlines()[-1]))


def snakefile_imports() -> str:
    """The package imports of the Snakefile and its rule files, as written there."""
    sources = [REPO_ROOT / "Snakefile", *sorted((REPO_ROOT / "workflow" / "rules").glob("*.smk"))]
    lines = [m.group(0) for path in sources for m in re.finditer(r"^from dynamax_bench\S* import .*$", path.read_text(), re.M)]
    assert lines, "the Snakefile imports nothing from dynamax_bench any more: update this test"
    return "\n".join(lines)


def test_parsing_the_snakefile_loads_no_model_library() -> None:
    """Its imports, the profile checks a job's process runs (exit-method registry, plug-ins; the
    main process also checks `source.config` keys against transformers) and the method lists it builds."""
    code = snakefile_imports() + (
        "\nfrom dynamax_bench.config import load_config"
        "\nconfig = load_config('config/default.yaml')"
        "\ncheck_profile(config)"
        "\nplan = Plan.from_config(config)"
        "\nplan.cells(), plan.latency_targets(), plan.classifier_metrics(), plan.sweep_methods({'policy': 'copy'})"
    )
    assert not MODEL_LIBRARIES & modules_after(code)


@pytest.mark.parametrize("module", ["dynamax_bench.reporting.score", "dynamax_bench.reporting.check"])
def test_rules_that_run_no_model_load_no_model_library(module: str) -> None:
    code = ("from dynamax_bench.runtime import set_up\n"
            "set_up({'seed': 1, 'threads': 1, 'offline': True}, torch=False)\n"
            f"import {module}")
    assert not MODEL_LIBRARIES & modules_after(code)


def test_generate_jobs_load_no_evaluation_or_plotting_library() -> None:
    loaded = modules_after("from dynamax_bench.generation.generate import generate_cell\n"
                           "from dynamax_bench.generation.decoder import Decoder")
    assert "torch" in loaded and not {"lm_eval", "matplotlib"} & loaded


@pytest.mark.parametrize("name", sorted(BUILTIN_METHODS))
def test_builtin_exit_methods_declare_what_their_classes_are(name: str) -> None:
    """The registry knows built-ins by name (no torch at parse time); the flags must match the classes."""
    method = EXIT_METHODS[name]
    assert issubclass(method.cls, ExitClassifier) == method.trained
    assert bool(getattr(method.cls, "stateful", False)) == method.stateful
    if method.trained:
        assert method.cls.kind == name
