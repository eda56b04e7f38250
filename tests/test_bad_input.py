"""Bad input loses nothing: each case stops with one line that names the file, the key and the fix.

One row per case (README "Troubleshooting" holds the same table): the row sets up the bad input as a
new user would, runs the entry point that meets it, and returns the message printed.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from dynamax_bench.config import REPO_ROOT, ConfigError
from dynamax_bench.files import write_json
from dynamax_bench.profile_checks import target_problem, validate_profile


@dataclass(frozen=True)
class Context:
    tmp: Path
    capsys: pytest.CaptureFixture
    smoke: dict  # the smoke profile, validated
    tiny_mistral: Path  # its prepared tiny_mistral folder


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Context], str]  # the message the user sees
    must_name: tuple[str, ...]  # the file (or target), the key and the fix, as they appear in the message


def profile_error(mutate: Callable[[dict, Path], None]) -> Callable[[Context], str]:
    """The error the Snakefile prints before building the DAG, for the smoke profile changed by `mutate`."""
    def run(ctx: Context) -> str:
        config = copy.deepcopy(ctx.smoke)
        mutate(config, ctx.tmp)
        with pytest.raises(ConfigError) as err:
            validate_profile(config)
        return str(err.value)
    return run


def local_triviaqa(lines: list[str] | bytes, fewshot: str | None) -> Callable[[dict, Path], None]:
    """TriviaQA read from a local file (its text, or raw bytes), with a few-shot pool."""
    def mutate(config: dict, tmp: Path) -> None:
        path = tmp / "trivia.jsonl"
        path.write_bytes(lines if isinstance(lines, bytes) else "".join(lines).encode())
        task = config["tasks"]["triviaqa"]
        task["source"] = {"kind": "local", "path": str(path)}
        if fewshot == "same":
            task["fewshot_source"] = {"kind": "local", "path": str(path)}
        elif fewshot == "embedded":
            task["fewshot_source"] = {"kind": "embedded"}
    return mutate


def check_cli(args: Callable[[Path], list[str]]) -> Callable[[Context], str]:
    def run(ctx: Context) -> str:
        from dynamax_bench.reporting.check import main

        assert main(args(ctx.tmp)) == 2  # documented errors exit 2; 1 is a regression
        return ctx.capsys.readouterr().err.strip()
    return run


def partial_regenerate(tmp: Path) -> list[str]:
    reference = tmp / "smoke.json"
    shutil.copy(REPO_ROOT / "reference" / "smoke.json", reference)
    cell = tmp / "results" / "cells" / "tiny_mistral" / "triviaqa" / "full.json"
    write_json(cell, {"spec": {"device": "cpu", "dtype": "float32"}, "provenance": {"profile": "smoke", "versions": {}}})
    return [str(tmp / "results"), str(reference), "--regenerate", "--reason", "new engine"]


def malformed_reference(tmp: Path) -> list[str]:
    (tmp / "ref.json").write_text('{"profile": "ci", "cells": {')
    write_json(tmp / "results" / "cells" / "b" / "t" / "full.json", {"n_samples": 1})
    return [str(tmp / "results"), str(tmp / "ref.json")]


def lmeval_cli(model_args: str) -> Callable[[Context], str]:
    """`dynamax-lm-eval` as a user types it; the argument error comes before any weights load."""
    def run(ctx: Context) -> str:
        from dynamax_bench.lmeval.cli import main

        argv = ["dynamax-lm-eval", "--model", "dynamax", "--model_args", model_args, "--tasks", "dynamax_triviaqa",
                "--include_path", str(REPO_ROOT / "dynamax_bench" / "lmeval" / "tasks"), "--limit", "1"]
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys, "argv", argv)
            with pytest.raises(SystemExit) as exit_:
                main()
        assert exit_.value.code == 2
        return ctx.capsys.readouterr().err.strip().splitlines()[-1]
    return run


def truncated_weights(ctx: Context) -> str:
    from dynamax_bench.backbones.prepare import BackboneError, load_backbone

    folder = ctx.tmp / "resources" / "backbones" / "tiny_mistral"
    shutil.copytree(ctx.tiny_mistral, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(BackboneError) as err:
        load_backbone(folder)
    return str(err.value)


def missing_backbone(ctx: Context) -> str:
    from dynamax_bench.backbones.prepare import BackboneError, load_backbone

    with pytest.raises(BackboneError) as err:
        load_backbone("tiny_mistral")  # a name where a prepared folder is expected
    return str(err.value)


TRIVIA = (REPO_ROOT / "dynamax_bench" / "data" / "triviaqa.jsonl").read_text().splitlines(keepends=True)
POOL = (REPO_ROOT / "dynamax_bench" / "data" / "triviaqa.train.jsonl").read_text().splitlines(keepends=True)

CASES = [
    Case("regenerate on a partial run", check_cli(partial_regenerate),
         ("smoke.json", "refusing to shrink", "1 cells", "--merge")),
    Case("typo in backbones.*.source.config",
         profile_error(lambda c, t: c["backbones"]["tiny_mistral"]["source"]["config"].update(num_hiden_layers=4)),
         ("backbones.tiny_mistral.source.config.num_hiden_layers", "MistralConfig", "did you mean num_hidden_layers?")),
    Case("few-shot pool holds evaluated samples", profile_error(local_triviaqa(TRIVIA[:3], "same")),
         ("trivia.jsonl", "tasks.triviaqa.fewshot_source", "3 evaluated sample(s)", "capital city of France",
          "training split")),
    Case("embedded pool copied into the local set", profile_error(local_triviaqa(POOL[:1] + TRIVIA[:3], "embedded")),
         ("trivia.jsonl", "tasks.triviaqa.fewshot_source", "1 evaluated sample(s)", "capital city of Portugal")),
    Case("local few-shot task without a pool", profile_error(local_triviaqa(TRIVIA[:3], None)),
         ("trivia.jsonl", "tasks.triviaqa.fewshot_source", "{kind: local, path: <train split>}", "num_fewshot: 0")),
    Case("exits.count beyond the latter half",
         profile_error(lambda c, t: c["backbones"]["tiny_mistral"].update(exits={"count": 6})),
         ("backbones.tiny_mistral.exits.count", "8-layer", "at most 4", "lower exits.count")),
    Case("prune<N> beyond the layer count",
         profile_error(lambda c, t: c["backbones"]["tiny_mistral"].update(prune=[0, 12])),
         ("backbones.tiny_mistral.prune", "cannot drop [12] of 8 layers", "below 8")),
    Case("unknown backbone in a target path",
         lambda ctx: target_problem(ctx.smoke, "results/smoke/cells/mistral7b/triviaqa/full.json", "mistral7b/triviaqa/full.json"),
         ("results/smoke/cells/mistral7b/triviaqa/full.json", "no backbone 'mistral7b'", "tiny_mistral, tiny_mamba2")),
    Case("unknown task in a target path",
         lambda ctx: target_problem(ctx.smoke, "results/smoke/cells/tiny_mistral/trivia/full.json", "tiny_mistral/trivia/full.json"),
         ("results/smoke/cells/tiny_mistral/trivia/full.json", "no task 'trivia'", "triviaqa, truthfulqa, coqa")),
    Case("empty task file", profile_error(local_triviaqa([], "embedded")),
         ("trivia.jsonl", "tasks.triviaqa.source", "no samples", "fix tasks.triviaqa.source")),
    Case("non-UTF-8 task file",
         profile_error(local_triviaqa('{"question": "Caf\xe9?", "answer": {"aliases": ["x"]}}\n'.encode("latin1"),
                                      "embedded")),
         ("trivia.jsonl", "tasks.triviaqa.source", "not UTF-8", "iconv -f latin1 -t utf-8")),
    Case("truncated model.safetensors", truncated_weights,
         ("resources/backbones/tiny_mistral", "cannot read its weights", "delete it",
          "snakemake --cores 1 resources/backbones/tiny_mistral --configfile config/smoke.yaml")),
    Case("malformed reference JSON", check_cli(malformed_reference),
         ("ref.json", "not valid JSON", "git checkout --")),
    Case("dynamax-lm-eval: unknown model argument", lmeval_cli("backbone=resources/backbones/smollm2,metod=full"),
         ("--model_args", "unknown argument(s) ['metod']", "'method'")),
    Case("dynamax-lm-eval: bad method", lmeval_cli("backbone=resources/backbones/smollm2,method=ee-mamba-copy"),
         ("--model_args", "unknown method 'ee-mamba-copy'", "ee-<kind>-<policy>-t<threshold>")),
    Case("dynamax-lm-eval: a backbone name, not a folder", missing_backbone,
         ("no prepared backbone at tiny_mistral",
          "snakemake --cores 1 resources/backbones/tiny_mistral --configfile config/smoke.yaml",
          "then use the folder resources/backbones/tiny_mistral")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_stops_with_one_line_naming_file_key_and_fix(case: Case, tmp_path: Path, capsys, smoke_config: dict,
                                                               tiny_mistral, backbone_root: Path) -> None:
    message = case.run(Context(tmp_path, capsys, smoke_config, backbone_root / "tiny_mistral"))
    print(f"{case.name}: {message}", file=sys.__stdout__)  # the README table quotes these lines
    assert "\n" not in message, message
    missing = [part for part in case.must_name if part not in message]
    assert not missing, f"{message!r} lacks {missing}"


def test_output_files_respect_the_umask(tmp_path: Path) -> None:
    """Outputs are written through a temporary file; they get the mode a plain open() gives."""
    from dynamax_bench.files import atomic_dir

    old = os.umask(0o027)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_dir(tmp_path / "folder") as folder:
            (folder / "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o750
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}


def dry_run(workdir: Path, config: dict, target: str) -> subprocess.CompletedProcess:
    profile = workdir / "profile.yaml"
    profile.write_text(yaml.safe_dump(config, sort_keys=False))
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", target, "--snakefile", str(REPO_ROOT / "Snakefile"),
         "--directory", str(workdir), "--configfile", str(profile)],
        capture_output=True, text=True,
    )


@pytest.mark.slow
def test_snakemake_names_what_a_target_path_gets_wrong(smoke_config: dict, tmp_path: Path) -> None:
    result = dry_run(tmp_path, smoke_config, "results/smoke/cells/nope/triviaqa/full.json")
    assert result.returncode != 0
    assert ("results/smoke/cells/nope/triviaqa/full.json: profile smoke has no backbone 'nope'; "
            "its backbones: tiny_mistral, tiny_mamba2") in result.stdout + result.stderr
    result = dry_run(tmp_path, smoke_config, "results/smoke/cells/tiny_mistral/triviaqa/prune12.json")
    assert result.returncode != 0
    assert "prune12: tiny_mistral has 8 layers, so prune<N> takes N from 0 to 7" in result.stdout + result.stderr


@pytest.mark.slow
def test_a_local_task_file_is_an_input_of_the_jobs_that_read_it(smoke_config: dict, tmp_path: Path) -> None:
    """Snakemake reruns a job whose input changed: editing the task file reruns the jobs that generate
    and score the cell (the smoke profile's baselines rules: generation.baseline_jobs per_task)."""
    data = tmp_path / "trivia.jsonl"
    data.write_text("".join(POOL[:1] + TRIVIA[:3]))  # evaluated samples, and the pool below is disjoint
    config = copy.deepcopy(smoke_config)
    config["tasks"] = {"triviaqa": {**config["tasks"]["triviaqa"], "source": {"kind": "local", "path": str(data)},
                                    "fewshot_source": {"kind": "local", "path": str(tmp_path / "pool.jsonl")}}}
    (tmp_path / "pool.jsonl").write_text("".join(POOL[1:]))
    result = dry_run(tmp_path, config, "results/smoke/cells/tiny_mistral/triviaqa/full.json")
    assert result.returncode == 0, result.stderr[-3000:]
    inputs = dict(re.findall(r"(?:local)?rule (\w+):\n\s+input: ([^\n]*)", result.stdout))
    for rule in ("generate_baselines_tiny_mistral", "score_baselines_tiny_mistral"):
        assert str(data) in inputs[rule] and str(tmp_path / "pool.jsonl") in inputs[rule], inputs
