"""The regression gate on real weights: the ci profile's DAG (config/ci.yaml) against reference/ci.json,
and faults injected on purpose that the gate must catch, each named by the field that caught it.

The DAG runs once per module (`make test-all`); each fault regenerates only the cells it touches, in a
copy of that run, through the rules' own functions (generate_cell, score_cell), with the profile's
thread count. The fast suite (`make test`) gates SmolLM2's `full` TriviaQA cell alone, made by the
same functions without the DAG: its tokens, EM and F1 against the reference's.
"""

from __future__ import annotations

import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dynamax_bench.classifiers.registry import is_trained
from dynamax_bench.config import REPO_ROOT
from dynamax_bench.costs.flops import flops_table
from dynamax_bench.files import read_json
from dynamax_bench.generation.generate import generate_cell
from dynamax_bench.profile_checks import load_profile
from dynamax_bench.reporting.check import Comparison, compare, load_reference, read_cells
from dynamax_bench.reporting.reference import HASH_FIELD
from dynamax_bench.reporting.score import score_cell
from dynamax_bench.reporting.statistics import IntervalSettings
from dynamax_bench.spec import decode_spec, parse_method, task_spec

CI = REPO_ROOT / "config" / "ci.yaml"
REFERENCE = REPO_ROOT / "reference" / "ci.json"


@pytest.fixture(scope="module")
def ci_config() -> dict:
    return load_profile(CI)


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory: pytest.TempPathFactory, smollm2, backbone_root: Path) -> Path:
    """The ci profile's whole DAG up to the check rule. Its SmolLM2 folder is the session's (the
    same prepare_backbone of the same GGUF file), so the GGUF is dequantised once per test session."""
    workdir = tmp_path_factory.mktemp("ci")
    shutil.copytree(backbone_root / "smollm2", workdir / "resources" / "backbones" / "smollm2")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "results/ci/check.txt", "--cores", "2",
         "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory", str(workdir), "--configfile", str(CI)],
        capture_output=True, text=True,
    )
    log = workdir / "logs" / "ci" / "check.log"
    assert result.returncode == 0, (log.read_text() if log.exists() else result.stderr)[-6000:]
    return workdir


def test_smollm2_full_triviaqa_cell_passes_the_ci_reference(smollm2, backbone_root: Path, ci_config: dict,
                                                            tmp_path: Path) -> None:
    """Real weights in the fast suite: a change that alters SmolLM2's answers (tokens) or their scores
    fails here, as it fails the whole ci run; the reference's other cells are not made, so not checked."""
    cell, backbone_dir = "smollm2/triviaqa/full", backbone_root / "smollm2"
    results = tmp_path / "results"
    flops = results / "flops" / "smollm2.json"
    flops_table(backbone_dir, flops, context_length=ci_config["flops"]["context_length"], kinds=[], options={},
                exits=ci_config["backbones"]["smollm2"]["exits"])
    make_cell(ci_config, results, backbone_dir, cell)
    reference = load_reference(REFERENCE)
    rows = compare(read_cells(results), {**reference, "cells": {cell: reference["cells"][cell]}})
    checked = {row.path: row.status for row in rows if row.cell == cell}
    assert {HASH_FIELD, "metrics.em", "metrics.f1", "n_tokens"} <= set(checked), sorted(checked)
    assert all(status == "pass" for status in checked.values()), [r for r in rows if r.status != "pass"]
    assert read_json(results / "cells" / f"{cell}.json")["metrics"]["em"] > 0


def make_cell(config: dict, results: Path, backbone_dir: Path, cell: str, generate: bool = True) -> None:
    """Generate (unless `generate` is False) and score one cell into `results` as its rules would: at
    the profile's torch threads (the job set-up's: same kernels, same tokens), with its evidence settings."""
    backbone, task, method = cell.split("/")
    tasks = task_spec(config, task)
    generations = results / "generations" / f"{cell}.jsonl"
    if generate:
        kind = parse_method(method).exit_kind
        classifiers = results / "classifiers" / backbone / f"{kind}.safetensors" if kind and is_trained(kind) else None
        threads = torch.get_num_threads()
        torch.set_num_threads(config["runtime"]["threads"])
        try:
            generate_cell(decode_spec(config, backbone, task, method), tasks, backbone_dir, generations, classifiers)
        finally:
            torch.set_num_threads(threads)
    score_cell(tasks, generations, results / "generations" / backbone / task / "full.jsonl", backbone_dir,
               results / "flops" / f"{backbone}.json", results / "cells" / f"{cell}.json", profile="ci",
               evidence=IntervalSettings.from_dict(config["evidence"]))


def rerun(run: Path, tmp: Path, config: dict, cells: list[str], generate: bool = True) -> list[Comparison]:
    """Regenerate (or only rescore) some cells in a copy of the run, then compare it with reference/ci.json.

    Cells are regenerated on the engine's reference path (batch 1, no prefix cache), where the
    faults below are injected; the batched path the profile runs is held to that path by
    tests/test_batched_engine.py and, in every job, by `engine.verify`."""
    config = {**config, "generation": {**config["generation"], "batch_size": 1, "prefix_cache": False}}
    results = tmp / "results"
    shutil.copytree(run / "results" / "ci", results)
    for cell in cells:
        make_cell(config, results, run / "resources" / "backbones" / cell.split("/")[0], cell, generate)
    return compare(read_cells(results), load_reference(REFERENCE))


def caught(rows: list[Comparison]) -> dict[str, set[str]]:
    """Cell -> fields outside tolerance."""
    failed: dict[str, set[str]] = {}
    for row in rows:
        if row.status == "FAIL":
            failed.setdefault(row.cell, set()).add(row.path)
    return failed


@pytest.mark.slow
def test_ci_profile_passes_its_reference_with_every_cell_and_token_checked(ci_run: Path) -> None:
    report = (ci_run / "results" / "ci" / "check.txt").read_text()
    assert " 0 outside" in report
    rows = compare(read_cells(ci_run / "results" / "ci"), load_reference(REFERENCE))
    cells = {row.cell for row in rows if row.path == HASH_FIELD}
    assert len(cells) == len(list((ci_run / "results" / "ci" / "cells").rglob("*.json"))) == 29
    assert all(row.status == "pass" for row in rows if row.path == HASH_FIELD)  # gated here, not skipped
    for path in (ci_run / "results" / "ci" / "cells").rglob("*.json"):
        assert any(value > 0 for value in read_json(path)["metrics"].values()), path


@pytest.mark.slow
def test_a_cell_regenerated_without_a_fault_passes(ci_run: Path, ci_config: dict, tmp_path: Path) -> None:
    """The control of every fault below: the rerun harness itself reproduces the reference."""
    assert caught(rerun(ci_run, tmp_path, ci_config, ["smollm2/triviaqa/ee-maxsoftmax-copy-t0.9"])) == {}


@pytest.mark.slow
def test_gate_catches_pruning_that_keeps_one_layer_too_many(ci_run: Path, ci_config: dict, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from dynamax_bench.engine import Strategy

    monkeypatch.setattr(Strategy, "prune", classmethod(lambda cls, n, dropped: cls(keep_layers=n - dropped + 1)))
    cell = "smollm2/triviaqa/prune2"
    failed = caught(rerun(ci_run, tmp_path, ci_config, [cell]))
    assert set(failed) == {cell} and "layers.mean_executed" in failed[cell]


@pytest.mark.slow
def test_gate_catches_a_silently_ignored_repetition_penalty(ci_run: Path, ci_config: dict, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from dynamax_bench.engine.generator import EarlyExitGenerator

    init = EarlyExitGenerator.__init__
    monkeypatch.setattr(EarlyExitGenerator, "__init__",
                        lambda self, *args, **kwargs: init(self, *args, **{**kwargs, "repetition_penalty": 1.0}))
    cell = "smollm2/truthfulqa/full"
    failed = caught(rerun(ci_run, tmp_path, ci_config, [cell]))
    assert set(failed) == {cell} and HASH_FIELD in failed[cell]


@pytest.mark.slow
def test_gate_catches_an_exit_at_greater_than_instead_of_greater_or_equal(ci_run: Path, ci_config: dict,
                                                                          tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from dynamax_bench.engine import generator, rules

    def decide_strictly(rule, point, hidden, state):
        confidence, _, exact = rules.decide(rule, point, hidden, state)
        return confidence, confidence > rule.threshold, exact

    monkeypatch.setattr(generator, "decide", decide_strictly)
    cell = "smollm2/triviaqa/ee-saturation-copy-t0"  # saturation reports 0.0 at the first exit: a tie at t0
    failed = caught(rerun(ci_run, tmp_path, ci_config, [cell]))
    assert set(failed) == {cell} and "layers.mean_executed" in failed[cell]


@pytest.mark.slow
def test_gate_catches_copy_writing_the_wrong_layers_kv(ci_run: Path, ci_config: dict, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from dynamax_bench.engine.stacks import TransformerStack

    def fill_from_one_layer_too_early(self, policy, executed, hidden, cache, inputs):
        source = cache.layers[executed - 2]
        for index in range(executed, self.num_layers):
            cache.update(source.keys[:, :, -1:, :], source.values[:, :, -1:, :], index)

    monkeypatch.setattr(TransformerStack, "fill_skipped", fill_from_one_layer_too_early)
    cell = "smollm2/triviaqa/ee-maxsoftmax-copy-t0.9"
    failed = caught(rerun(ci_run, tmp_path, ci_config, [cell]))
    assert set(failed) == {cell} and HASH_FIELD in failed[cell]


@pytest.mark.slow
def test_gate_catches_a_normalisation_that_keeps_punctuation(ci_run: Path, ci_config: dict, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Same tokens, another score: caught exactly, however small against the sample-size interval."""
    from dynamax_bench.generation import answers

    assert answers._PUNCTUATION == set(string.punctuation)  # the one answer normaliser (CoQA, TriviaQA)
    monkeypatch.setattr(answers, "_PUNCTUATION", set())
    cell = "smollm2/triviaqa/ee-maxsoftmax-copy-t0.9"  # a cell whose answers' F1 depends on punctuation
    failed = caught(rerun(ci_run, tmp_path, ci_config, [cell], generate=False))
    assert set(failed) == {cell} and "metrics.f1" in failed[cell], failed
