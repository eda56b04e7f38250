"""Every code block a user would paste from README.md and docs/*.md works.

Which blocks run depends on the fence's language:
- ```python: executed in a fresh interpreter (offline, from the checkout's root, as a user pastes it), and must exit 0;
- ```bash / ```sh / ```shell: each command is checked cheaply but for real: `make <target>` names a
  target of the Makefile; `snakemake ... <targets>` is planned by a dry run of its profile (its
  `--configfile`, the `configfile` of its `--profile`, or config/default.yaml; one dry run per profile,
  shared by every block); `python -m <module>`, `python <script>.py` and the console scripts of
  pyproject.toml exist and answer `--help`; pip, conda and hf commands are left alone;
- any other language (```text, ```toml, ```yaml, ...) is not run: mark a block that must not be
  run, or that only shows output, as ```text. A fence without a language fails.
Fast (`make test`): fences, make targets, that modules, scripts and console scripts exist, snakemake
profiles. Slow (`make test-all`): running the python blocks (each imports torch: 5 to 45 s on 2 shared
cores), the `--help` calls and one snakemake dry run per profile.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from dynamax_bench.config import REPO_ROOT

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?P<lang>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
SHELL = {"bash", "sh", "shell"}
UNCHECKED = {"pip", "conda", "hf", "cd", "export"}  # commands the suite does not own
OPTIONS_WITH_VALUE = {"--cores", "-c", "--jobs", "-j", "--configfile", "--profile", "--set-resources", "--report",
                      "--forcerun", "--config", "--slurm-partition-config", "--sdm", "--until", "--rerun-triggers"}
SEPARATORS = {"&&", "||", ";", "|"}
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    body: str

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(pages: list[Path] = PAGES) -> list[Block]:
    """The fenced code blocks of the pages, each with the line of its opening fence."""
    found = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(page.relative_to(REPO_ROOT).as_posix(), line, match["lang"].strip(), match["body"]))
    return found


def commands(body: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments dropped, `a && b` split, and
    leading `VAR=value` assignments removed."""
    out = []
    for line in body.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        current: list[str] = []
        for word in [*words, ";"]:
            if word in SEPARATORS:
                while current and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", current[0]):
                    current.pop(0)
                if current:
                    out.append(current)
                current = []
            else:
                current.append(word)
    return out


@functools.cache
def make_targets() -> set[str]:
    text = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.M))


@functools.cache
def console_scripts() -> set[str]:
    return set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"])


def snakemake_plan(args: list[str]) -> tuple[str, list[str]]:
    """(config file, targets) of a snakemake command line."""
    config, targets, rest = "config/default.yaml", [], iter(args)
    for arg in rest:
        if arg in OPTIONS_WITH_VALUE:
            value = next(rest)
            if arg == "--configfile":
                config = value
            elif arg == "--profile":
                config = yaml.safe_load((REPO_ROOT / value / "config.v8+.yaml").read_text())["configfile"]
        elif not arg.startswith("-"):
            targets.append(arg)
    return config, targets


def help_works(argv: list[str]) -> str | None:
    run = subprocess.run([*argv, "--help"], cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    return None if run.returncode == 0 else f"`{' '.join(argv)} --help` exits {run.returncode}: {run.stderr[-300:]}"


def shell_problems(block: Block, plans: dict[str, set[str]] | None = None, run_help: bool = True) -> list[str]:
    """What is wrong with a shell block's commands (snakemake targets are added to `plans` for the dry runs);
    without `run_help`, a module, script or console script need only exist."""
    problems = []
    for argv in commands(block.body):
        argv = [argv[0].removeprefix(".venv/bin/"), *argv[1:]]  # the suite's own environment, as README runs it
        program, args = argv[0], argv[1:]
        where = f"{block.name}: `{' '.join(argv)}`"
        if program == "make":
            missing = [a for a in args if "=" not in a and not a.startswith("-") and a not in make_targets()]
            if missing:
                problems.append(f"{where}: no make target {missing} in the Makefile")
        elif program == "snakemake" or argv[:3] == ["python", "-m", "dynamax_bench.launch"]:
            config, targets = snakemake_plan(args if program == "snakemake" else args[2:])
            if not (REPO_ROOT / config).exists():
                problems.append(f"{where}: no profile {config}")
            elif plans is not None:
                plans[config].update(targets)
        elif program in ("python", "python3"):
            if args[:1] == ["-m"]:
                problem = (f"no module {args[1]}" if importlib.util.find_spec(args[1]) is None
                           else help_works([sys.executable, "-m", args[1]]) if run_help else None)
            elif args and args[0].endswith(".py"):
                problem = (f"no script {args[0]}" if not (REPO_ROOT / args[0]).exists()
                           else help_works([sys.executable, args[0]]) if run_help else None)
            else:
                problem = "only `python -m <module>` and `python <script>.py` are checked; mark the block ```text"
            if problem:
                problems.append(f"{where}: {problem}")
        elif program in console_scripts():
            problem = help_works([str(Path(sys.executable).parent / program)]) if run_help else None
            if problem:
                problems.append(f"{where}: {problem}")
        elif program not in UNCHECKED:
            problems.append(f"{where}: {program!r} is no command this test knows; mark the block ```text if it is "
                            "not meant to be run")
    return problems


ALL = blocks()


def test_every_fence_says_its_language() -> None:
    bare = [b.name for b in ALL if not b.lang]
    assert bare == [], f"code blocks without a language (use ```text for one not to run): {bare}"


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in ALL if b.lang == "python"], ids=lambda b: b.name)
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-c", block.body], cwd=REPO_ROOT, env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, f"{block.name} exits {run.returncode}:\n{run.stderr[-2000:]}"


@pytest.mark.parametrize("block", [b for b in ALL if b.lang in SHELL], ids=lambda b: b.name)
def test_shell_block_commands_exist(block: Block) -> None:
    problems = shell_problems(block, run_help=False)
    assert problems == [], "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in ALL if b.lang in SHELL], ids=lambda b: b.name)
def test_shell_block_commands_answer_help(block: Block) -> None:
    problems = shell_problems(block)
    assert problems == [], "\n".join(problems)


def planned() -> dict[str, set[str]]:
    plans: dict[str, set[str]] = defaultdict(set)
    for block in ALL:
        if block.lang in SHELL:
            shell_problems(block, plans)
    return plans


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(planned()))
def test_snakemake_targets_of_the_docs_are_planned(config: str) -> None:
    """One dry run per profile plans every target the pages ask that profile for."""
    targets = sorted(planned()[config])
    run = subprocess.run([sys.executable, "-m", "snakemake", *targets, "--cores", "1", "-n", "--configfile", config],
                         cwd=REPO_ROOT, env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, f"dry run of {config} for {targets} fails:\n{run.stderr[-2000:]}"


@pytest.mark.parametrize(("lang", "body", "problem"), [
    ("bash", "make paper_tables PROFILE=ci\n", None),
    ("bash", "make papers\n", "no make target ['papers']"),
    ("bash", "python -m dynamax_bench.no_such_module\n", "no module dynamax_bench.no_such_module"),
    ("bash", "python benchmarks/no_such.py --out x\n", "no script benchmarks/no_such.py"),
    ("bash", "A=1 B=2 \\\n    snakemake paper_tables/ --configfile config/nope.yaml\n", "no profile config/nope.yaml"),
    ("bash", "rm -rf results  # a comment\n", "'rm' is no command this test knows"),
])
def test_a_broken_shell_block_is_caught(lang: str, body: str, problem: str | None) -> None:
    problems = shell_problems(Block("page.md", 1, lang, body))
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems


@pytest.mark.slow
def test_a_broken_python_block_is_caught(tmp_path: Path) -> None:
    block = Block("page.md", 1, "python", "from dynamax_bench.classifiers.registry import register\nregister('x', int)\n")
    with pytest.raises(AssertionError, match="exits 1"):
        test_python_block_runs(block, tmp_path)


def test_snakemake_command_lines_are_read_for_profile_and_targets() -> None:
    assert snakemake_plan(["--cores", "1", "results/x.json", "--configfile", "config/ci.yaml"]) == (
        "config/ci.yaml", ["results/x.json"])
    assert snakemake_plan(["paper_tables/", "--profile", "profiles/slurm", "-n"]) == ("config/paper.yaml",
                                                                                    ["paper_tables/"])
