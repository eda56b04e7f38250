"""Bad input loses nothing: each case stops with one line that names the file, the key and the fix.

One row per case: the row sets up the bad input as a new user would, runs the entry point that meets
it, and returns the message printed. README's Troubleshooting table is generated from these messages
(`make troubleshooting` rewrites it) and `test_readme_troubleshooting_table_is_the_cases` fails when
the two disagree.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from dynamax_bench.config import REPO_ROOT, ConfigError
from dynamax_bench.doctor import DamagedCheckpoint, check_checkpoints
from dynamax_bench.files import atomic_path, write_json
from dynamax_bench.profile_checks import target_problem, validate_profile


@dataclass(frozen=True)
class Context:
    tmp: Path
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

        printed = io.StringIO()
        with contextlib.redirect_stderr(printed):
            assert main(args(ctx.tmp)) == 2  # documented errors exit 2; 1 is a regression
        return printed.getvalue().strip()
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
                "--include_path", str(REPO_ROOT / "dynamax_bench" / "lmeval" / "tasks")]
        printed = io.StringIO()
        with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(printed):
            patch.setattr(sys, "argv", argv)
            with pytest.raises(SystemExit) as exit_:
                main()
        assert exit_.value.code == 2, printed.getvalue()[-2000:]
        assert "Traceback" not in printed.getvalue(), printed.getvalue()[-3000:]
        return printed.getvalue().strip().splitlines()[-1]  # after lm-eval's own INFO lines
    return run


def damaged(where: str, keep: float = 0.5) -> Callable[[Context], str]:
    """A checkpoint of the smoke run under `where` (a path in the run's folder) cut to `keep` of its
    size, as a full disk or a killed copy leaves it; the check the DAG runs when it starts."""
    def run(ctx: Context) -> str:
        if where.startswith("resources/backbones/"):
            shutil.copytree(ctx.tiny_mistral, ctx.tmp / where)
            path = ctx.tmp / where / "model.safetensors"
        else:
            from safetensors.torch import save_file

            path = ctx.tmp / where
            path.parent.mkdir(parents=True)
            save_file({"exit0.linear.weight": torch.ones(2, 64), "hidden.4": torch.zeros(16, 64)}, str(path))
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
        with pytest.raises(DamagedCheckpoint) as err:
            check_checkpoints(ctx.smoke, "config/smoke.yaml", root=ctx.tmp)
        return str(err.value)
    return run


def interrupted_run(ctx: Context) -> str:
    """`make paper_tables` (dynamax_bench/launch.py) stopped by SIGTERM while a job runs: the last line."""
    (ctx.tmp / "Snakefile").write_text('rule slow:\n    output: "out.txt"\n    shell: "sleep 60; touch {output}"\n')
    run = subprocess.Popen([sys.executable, "-m", "dynamax_bench.launch", "--cores", "1", "out.txt"], cwd=ctx.tmp,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((ctx.tmp / ".snakemake").glob("incomplete/*")) and time.monotonic() < deadline:
        time.sleep(0.2)  # until the job has started
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 128 + signal.SIGTERM and not (ctx.tmp / "out.txt").exists()
    assert not (ctx.tmp / ".snakemake" / "locks").exists() or not any((ctx.tmp / ".snakemake" / "locks").iterdir())
    return err.strip().splitlines()[-1]


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
    Case("typo in a top-level profile key", profile_error(lambda c, t: c.update(generaton=c.pop("generation"))),
         ("generaton: unknown key", "did you mean generation?", "missing required key(s) generation")),
    Case("typo in a nested profile key", profile_error(lambda c, t: c["generation"].update(batch_sise=4)),
         ("generation.batch_sise: unknown key", "did you mean batch_size?", "generation takes")),
    Case("profile value out of range", profile_error(lambda c, t: c["classifiers"].update(thresholds=[0.5, 1.5])),
         ("classifiers.thresholds[1]", "1.5", "must be <= 1")),
    Case("profile value not allowed", profile_error(lambda c, t: c["runtime"].update(dtype="float33")),
         ("runtime.dtype", '"float33"', "float32, bfloat16, float16", "did you mean float32?")),
    Case("damaged backbone weights when the DAG starts", damaged("resources/backbones/tiny_mistral"),
         ("resources/backbones/tiny_mistral/model.safetensors", "damaged checkpoint",
          "rm -r resources/backbones/tiny_mistral && snakemake --cores all resources/backbones/tiny_mistral "
          "--configfile config/smoke.yaml")),
    Case("damaged classifier checkpoint when the DAG starts",
         damaged("results/smoke/classifiers/tiny_mistral/mamba.safetensors", keep=0.9),
         ("results/smoke/classifiers/tiny_mistral/mamba.safetensors", "truncated",
          "rm results/smoke/classifiers/tiny_mistral/mamba.safetensors && snakemake --cores all "
          "results/smoke/classifiers/tiny_mistral/mamba.safetensors --configfile config/smoke.yaml")),
    Case("truncated oracle store shard when the DAG starts",
         damaged("results/smoke/oracle/tiny_mamba2/shard-00000.safetensors", keep=0.001),
         ("results/smoke/oracle/tiny_mamba2/shard-00000.safetensors", "damaged checkpoint",
          "rm -r results/smoke/oracle/tiny_mamba2 && snakemake --cores all results/smoke/oracle/tiny_mamba2")),
    Case("dynamax-lm-eval: batch_size in --model_args", lmeval_cli("backbone=resources/backbones/smollm2,batch_size=4"),
         ("--model_args batch_size=4", "lm-eval passes its own --batch_size", "pass --batch_size 4")),
    Case("dynamax-lm-eval: unknown exit kind", lmeval_cli("backbone=resources/backbones/smollm2,method=ee-lstm-copy-t0.9"),
         ("--model_args", "unknown exit method kind 'lstm'", "known kinds: ['calm'")),
    Case("dynamax-lm-eval: a number that is not one", lmeval_cli("backbone=x,repetition_penalty=high"),
         ("--model_args", "repetition_penalty='high' is not a number")),
    Case("run stopped by SIGTERM", interrupted_run,
         ("interrupted by SIGTERM, not failed", "rerun the same command")),
]


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory, smoke_config: dict, tiny_mistral,
            backbone_root: Path) -> dict[str, str]:
    """Every case's message, each run in its own folder, the folder's path dropped from the message."""
    messages = {}
    for number, case in enumerate(CASES):
        tmp = tmp_path_factory.mktemp(f"case{number}")
        message = case.run(Context(tmp, copy.deepcopy(smoke_config), backbone_root / "tiny_mistral"))
        messages[case.name] = message.replace(f"{tmp}/", "")
    return messages


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_stops_with_one_line_naming_file_key_and_fix(case: Case, printed: dict[str, str]) -> None:
    message = printed[case.name]
    assert "\n" not in message, message
    missing = [part for part in case.must_name if part not in message]
    assert not missing, f"{message!r} lacks {missing}"


README = REPO_ROOT / "README.md"
TABLE_HEADER = "| you did | you see | lines |\n|---|---|---|\n"


def troubleshooting_rows(messages: dict[str, str]) -> str:
    """README's Troubleshooting rows: each case, the message it prints, and its line count on the screen."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")
    return "".join(f"| {cell(case.name)} | {cell(messages[case.name])} | {len(messages[case.name].splitlines())} |\n"
                   for case in CASES)


def test_readme_troubleshooting_table_is_the_cases(printed: dict[str, str]) -> None:
    """The table lists every case with the message it really prints (`make troubleshooting` rewrites it)."""
    text = README.read_text()
    assert text.count(TABLE_HEADER) == 1, f"README.md needs one Troubleshooting table headed {TABLE_HEADER!r}"
    start = text.index(TABLE_HEADER) + len(TABLE_HEADER)
    end = text.find("\n\n", start)
    rows = troubleshooting_rows(printed)
    if os.environ.get("DYNAMAX_WRITE_TROUBLESHOOTING"):
        with atomic_path(README) as tmp:
            tmp.write_text(text[:start] + rows + text[end + 1:])
        return
    assert text[start:end + 1] == rows, "README's Troubleshooting table differs from the cases: run make troubleshooting"


def test_a_schema_error_keeps_the_full_schema_for_the_log(smoke_config: dict) -> None:
    config = copy.deepcopy(smoke_config)
    config["generaton"] = config.pop("generation")
    with pytest.raises(ConfigError) as err:
        validate_profile(config)
    assert "\n" not in str(err.value) and "Failed validating 'additionalProperties' in schema" in err.value.detail


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


def test_doctor_lists_every_damaged_checkpoint_and_counts_the_files(tmp_path: Path, capsys) -> None:
    from safetensors.torch import save_file

    from dynamax_bench.doctor import main

    folder = tmp_path / "results" / "smoke" / "classifiers" / "tiny_mistral"
    folder.mkdir(parents=True)
    for kind in ("calm", "ffn", "mamba"):
        save_file({"exit0.w": torch.ones(4, 4)}, str(folder / f"{kind}.safetensors"))
    (folder / "ffn.safetensors").write_bytes(b"")  # emptied
    mamba = folder / "mamba.safetensors"
    size = mamba.stat().st_size
    mamba.write_bytes(mamba.read_bytes() + b"\0")  # padded
    assert main(["--configfile", str(REPO_ROOT / "config" / "smoke.yaml"), "--directory", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert [line.split(":")[0] for line in err.splitlines()] == [str(folder / "ffn.safetensors"), str(mamba)]
    assert "0 bytes, shorter than the 8-byte header length" in err and f"its header describes {size} bytes, the file has {size + 1}" in err
    assert out.startswith("doctor: 2 damaged of 3 checkpoint files of profile smoke")
    assert main(["--configfile", str(REPO_ROOT / "config" / "smoke.yaml"), "--directory", str(tmp_path / "none")]) == 0


@pytest.mark.slow
def test_snakemake_prints_one_line_for_a_mistyped_profile_key(smoke_config: dict, tmp_path: Path) -> None:
    config = copy.deepcopy(smoke_config)
    config["generaton"] = config.pop("generation")
    result = dry_run(tmp_path, config, "paper_tables/")
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, lines[:20]
    assert "profile.yaml: generaton: unknown key; did you mean generation?" in lines[0]
    assert "Failed validating 'additionalProperties' in schema" in (tmp_path / "logs" / "profile_check.log").read_text()


@pytest.mark.slow
def test_a_dry_run_stops_on_a_damaged_backbone_and_deletes_nothing(smoke_config: dict, tiny_mistral,
                                                                   backbone_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "resources" / "backbones" / "tiny_mistral"
    shutil.copytree(backbone_root / "tiny_mistral", folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    result = dry_run(tmp_path, smoke_config, "paper_tables/")
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, lines[:20]
    assert lines[0].startswith("resources/backbones/tiny_mistral/model.safetensors: damaged checkpoint")
    assert "rm -r resources/backbones/tiny_mistral && snakemake --cores all resources/backbones/tiny_mistral" in lines[0]
