"""Mutation testing: how many small faults in the modules where a wrong number hides the fast tests catch.

mutmut (pinned in constraints.txt) changes one operator, constant or argument at a time and runs the
tests on each such mutant; a mutant no test fails on "survived". Each module runs in its own scratch
copy of the working tree (build/mutation/<name>/) with only the fast test files listed for it, and
mutmut narrows those further to the tests that call the mutated function, so a mutant costs seconds.

    make mutation                                           # every module of MODULES but the `later` ones
    python benchmarks/mutation.py --modules score ledger    # some modules (names of MODULES)
    python benchmarks/mutation.py --modules all             # every module, the `later` ones included

The report (benchmarks/results/mutation.json, and mutation.md beside it) gives per module the
commit its run measured, the mutants, how many the tests killed, the survivors with their diffs, and the equivalent mutants (a
change no correct test can see, listed with the reason in benchmarks/mutation_equivalent.yaml).
Score = killed / (mutants - equivalent); a timeout counts as killed (the mutant changed behaviour).
A run replaces the entries of the modules it ran and keeps the others' (each with its commit), so the
modules can be measured a few at a time; `--fresh` starts the report anew. `--sample N` tests N of a
module's mutants drawn at random (seeded) where every mutant would take too long (the batched engine's
~660 take hours here): its score is an estimate, with a 95% Clopper-Pearson interval; `--survivors-of`
such a report reruns the survivors of that same draw.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import yaml
from scipy.stats import binomtest

from dynamax_bench.files import atomic_path, write_json
from dynamax_bench.provenance import git_commit, machine_description

REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout this script is in (not the installed package's)
FAST = ["-m", "not slow"]


@dataclass(frozen=True)
class Module:
    path: str  # the file mutmut mutates
    tests: tuple[str, ...]  # the fast test files (or node ids) that cover it
    later: bool = False  # being rewritten now: measured with --modules all (or by name), after the others


# One line per module: the file and the fast tests that cover it.
MODULES: dict[str, Module] = {
    "rules": Module("dynamax_bench/engine/rules.py", ("tests/test_exit_methods.py", "tests/test_classifiers.py")),
    "correctness": Module("dynamax_bench/engine/correctness.py", ("tests/test_correctness.py",)),
    "neartie": Module("dynamax_bench/engine/neartie.py", ("tests/test_correctness.py",)),
    "decoder": Module("dynamax_bench/generation/decoder.py",
                      ("tests/test_decoder.py", "tests/test_kernels.py::test_decoder_load_runs_the_check",
                       "tests/test_speculative_pipeline.py::test_a_row_changed_at_a_near_tie_takes_the_full_models_output")),
    "score": Module("dynamax_bench/reporting/score.py", ("tests/test_score.py",)),
    "ledger": Module("dynamax_bench/costs/ledger.py", ("tests/test_costs.py",)),
    "lengths": Module("dynamax_bench/costs/lengths.py", ("tests/test_costs.py",)),
    "answers": Module("dynamax_bench/generation/answers.py", ("tests/test_coqa.py", "tests/test_triviaqa.py")),
    "triviaqa": Module("dynamax_bench/generation/tasks/triviaqa.py", ("tests/test_triviaqa.py",)),
    "coqa": Module("dynamax_bench/generation/tasks/coqa.py", ("tests/test_coqa.py",)),
    "truthfulqa": Module("dynamax_bench/generation/tasks/truthfulqa.py", ("tests/test_truthfulqa.py",)),
    "tasks_base": Module("dynamax_bench/generation/tasks/base.py",
                         ("tests/test_task_sources.py", "tests/test_triviaqa.py", "tests/test_coqa.py",
                          "tests/test_truthfulqa.py", "tests/test_lmeval_tasks.py")),
    # rewritten by the lead (statistics, claims) and the engine developer (batched): run after merging
    "statistics": Module("dynamax_bench/reporting/statistics.py", ("tests/test_statistics.py",), later=True),
    "claims": Module("dynamax_bench/reporting/claims.py", ("tests/test_claims.py",), later=True),
    # a selection of its file's fast tests (all 54: about 50 s a pass): the row-for-row equality on each path
    # (full, oracle, pruning, a stateless and the stateful rule on both families), host reads, sweeps in one
    # call, stopping, verification, kept prompt passes, near-tie records, the sliding window's refusal
    "batched": Module("dynamax_bench/engine/batched.py", tuple(f"tests/test_batched_engine.py::{test}" for test in (
        *(f"test_batched_rows_equal_batch_one[{case}]" for case in (
            "tiny_mistral-full", "tiny_mistral-oracle", "tiny_mistral-prune3", "tiny_mistral-ee-calm-0",
            "tiny_mistral-ee-mamba-0", "tiny_mamba2-ee-mamba-1", "tiny_mamba2-ee-maxsoftmax-0",
            "tiny_mistral-ee-maxsoftmax-1", "tiny_mistral-ee-saturation-0")),
        "test_a_decode_step_reads_the_device_once_plus_once_per_exit",
        "test_a_sweep_in_one_call_equals_each_strategy_alone[tiny_mistral]",
        "test_batched_never_exit_equals_generate", "test_a_constant_confidence_at_its_threshold_is_no_near_tie",
        "test_rows_leave_the_batch_when_they_stop", "test_verify_re_decodes_and_explains_differences",
        "test_verify_re_decodes_a_row_through_its_last_near_tie",
        "test_kept_prompt_passes_decode_like_fresh_ones[tiny_mistral]",
        "test_near_ties_name_the_token_kind_exit_and_value", "test_a_batch_that_may_reach_the_sliding_window_is_refused")),
        later=True),
}
EQUIVALENT_FILE = REPO_ROOT / "benchmarks" / "mutation_equivalent.yaml"
SCRATCH = REPO_ROOT / "build" / "mutation"
# The seeded test backbones, prepared by the first test run and reused by every mutant's (tests/conftest.py).
BACKBONES = SCRATCH / "backbones"
# mutmut's exit codes (mutmut/stats.py): 1 and 3 killed, 0 survived, 33 and 5 no test covers it, 36 and
# the SIGXCPU codes a timeout
KILLED, TIMEOUT, NO_TESTS = {1, 3}, {36, 24, -24, 152, 255}, {5, 33}


def working_tree_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files: the tree the tests run on."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [name for name in out.split("\0") if name and (REPO_ROOT / name).is_file()]


def mutmut_section(module: Module) -> str:
    """The [tool.mutmut] table of one module's scratch copy."""
    also = sorted({name.split("/")[0] for name in working_tree_files()} - {"dynamax_bench", "tests", "pyproject.toml"})
    table = {
        "source_paths": ["dynamax_bench"],
        "only_mutate": [module.path],
        "also_copy": also,
        "pytest_add_cli_args_test_selection": list(module.tests),
        "pytest_add_cli_args": ["-p", "no:cacheprovider", *FAST, "-x", "-q"],
        "process_isolation": "forkserver",  # torch is not fork-safe once its threads started
    }
    lines = ["", "[tool.mutmut]"] + [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def scratch_copy(name: str, module: Module) -> Path:
    folder = SCRATCH / name
    if folder.exists():
        shutil.rmtree(folder)
    for relative in working_tree_files():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / relative, target)
    with (folder / "pyproject.toml").open("a") as out:
        out.write(mutmut_section(module))
    return folder


def mutmut(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("mutmut")), *args], cwd=folder, capture_output=True,
                          text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
                                          "DYNAMAX_TEST_BACKBONES": str(BACKBONES)})


def changed_lines(diff: str) -> tuple[str, str]:
    """The mutated line, before and after, whitespace-collapsed (how equivalent mutants are matched)."""
    minus = [" ".join(line[1:].split()) for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    plus = [" ".join(line[1:].split()) for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return "\n".join(minus), "\n".join(plus)


def load_equivalents() -> list[dict]:
    if not EQUIVALENT_FILE.exists():
        return []
    return yaml.safe_load(EQUIVALENT_FILE.read_text()) or []


def equivalent_reason(name: str, function: str, diff: str, equivalents: list[dict]) -> str | None:
    before, after = changed_lines(diff)
    for entry in equivalents:
        if (entry["module"], entry["function"], entry["original"], entry["mutant"]) == (name, function, before, after):
            return entry["reason"]
    return None


SAMPLE_SEED = 0  # --sample's draw: the same source gives the same mutants


def sampled(names: list[str], size: int) -> list[str]:
    """`size` of `names` drawn at random without replacement, with SAMPLE_SEED."""
    return sorted(random.Random(SAMPLE_SEED).sample(sorted(names, key=_natural), min(size, len(names))), key=_natural)


def run_module(name: str, module: Module, children: int, equivalents: list[dict], previous: dict | None,
               sample: int | None = None) -> dict:
    """mutmut over one module; with `previous` (this module's entry of an earlier report, same source),
    only its survivors run again and its kills carry over (tests were added, none removed); with `sample`,
    only that many of its mutants, drawn at random (the score is then an estimate). A sampled `previous`
    draws the same sample again and counts only it: its other mutants never ran."""
    tests = tuple(test for test in module.tests if (REPO_ROOT / test.split("::")[0]).is_file())
    if not tests:
        return {"path": module.path, "tests": [], "mutants": 0, "killed": 0, "timeouts": 0, "survived": 0,
                "equivalent": 0, "score": None, "seconds": 0.0, "survivors": [], "equivalents": [],
                "note": f"none of its test files {list(module.tests)} exists"}
    module = Module(module.path, tests, module.later)
    folder = scratch_copy(name, module)
    started = time.perf_counter()
    again = [f"{module.path[:-3].replace('/', '.')}.{entry['mutant']}"
             for entry in (previous or {}).get("survivors", []) + (previous or {}).get("equivalents", [])]
    if previous is not None and not again:
        return {**previous, "carried_over": True}
    meta = folder / "mutants" / f"{module.path}.meta"
    drawn = None
    if previous is not None and previous.get("sample"):
        sample = previous["sample"]["drawn"]  # the same draw again (same source, same seed): its survivors rerun
    if sample is not None:  # mutmut makes every mutant and its test stats, then stops at a name that matches none
        listed = mutmut(folder, "run", "--max-children", str(children), "no-such-mutant-only-list-them")
        no_mutants(meta, module, listed)
        drawn = sampled(list(json.loads(meta.read_text())["exit_code_by_key"]), sample)
        again = again if previous is not None else drawn
    no_mutants(meta, module, mutmut(folder, "run", "--max-children", str(children), *again))
    found = collect(name, module, folder, equivalents, again if previous is not None else None, drawn)
    return {**found, "seconds": round(time.perf_counter() - started, 1)}


def no_mutants(meta: Path, module: Module, result: subprocess.CompletedProcess) -> None:
    """Stop with mutmut's output where it made no mutants (rather than running, or counting, nothing)."""
    if not meta.exists():
        raise SystemExit(f"mutmut made no mutants of {module.path}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def collect(name: str, module: Module, folder: Path, equivalents: list[dict], again: list[str] | None = None,
            drawn: list[str] | None = None) -> dict:
    """The results mutmut left in a scratch copy; with `again`, the mutants not in it count as killed before;
    with `drawn`, only those mutants count (a sample of the module's)."""
    meta_path = folder / "mutants" / f"{module.path}.meta"
    codes: dict[str, int | None] = json.loads(meta_path.read_text())["exit_code_by_key"]
    of = len(codes)
    if again is not None:
        codes = {key: code for key, code in codes.items() if key in again} | {key: 1 for key in codes if key not in again}
    if drawn is not None:
        codes = {key: code for key, code in codes.items() if key in drawn}
    killed = timeout = 0
    survivors, equivalent = [], []
    for mutant, code in sorted(codes.items(), key=lambda item: _natural(item[0])):
        if code in KILLED:
            killed += 1
            continue
        if code in TIMEOUT:
            timeout += 1
            continue
        diff = "\n".join(mutmut(folder, "show", mutant).stdout.splitlines()[1:])
        function = re.sub(r"^x[ǁ_]|__mutmut_\d+$", "", mutant.rsplit(".", 1)[1]).replace("ǁ", ".")
        status = "no test covers it" if code in NO_TESTS else "survived" if code == 0 else f"exit code {code}"
        entry = {"mutant": mutant.rsplit(".", 1)[1], "function": function, "status": status, "diff": diff}
        reason = equivalent_reason(name, function, diff, equivalents)
        if reason:
            equivalent.append({**entry, "reason": reason})
        else:
            survivors.append(entry)
    scored = len(codes) - len(equivalent)
    if drawn is not None and scored:
        interval = binomtest(killed + timeout, scored).proportion_ci(0.95, method="exact")
        sample = {"sample": {"drawn": len(drawn), "of": of, "seed": SAMPLE_SEED,
                             "score_interval": [round(interval.low, 4), round(interval.high, 4)]}}
    else:
        sample = {}
    return {
        "path": module.path,
        "tests": list(module.tests),
        **({"rerun_of_survivors": len(again)} if again is not None else {}),
        **sample,
        "mutants": len(codes),
        "killed": killed + timeout,
        "timeouts": timeout,
        "survived": len(survivors),
        "equivalent": len(equivalent),
        "score": round((killed + timeout) / scored, 4) if scored else None,
        "survivors": survivors,
        "equivalents": equivalent,
    }


def _natural(key: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def markdown(report: dict) -> str:
    """The report as a page: the score table, then every survivor and equivalent mutant with its diff."""
    rows = ["| module | mutants | killed | survived | equivalent | score | seconds | commit |",
            "|---|---|---|---|---|---|---|---|"]
    for name, found in report["modules"].items():
        score = "-" if found["score"] is None else f"{100 * found['score']:.1f}%"
        if found.get("sample"):
            drawn, low, high = found["sample"]["drawn"], *found["sample"]["score_interval"]
            score += f" (estimate: {drawn} of {found['sample']['of']} drawn; 95% {100 * low:.1f}-{100 * high:.1f}%)"
        rows.append(f"| {name} (`{found['path']}`) | {found['mutants']} | {found['killed']} | {found['survived']} | "
                    f"{found['equivalent']} | {score} | {found['seconds']} | {found['commit'][:7]} |")
    total = report["total"]
    score = "-" if total["score"] is None else f"{100 * total['score']:.1f}%"
    rows.append(f"| **all** | {total['mutants']} | {total['killed']} | {total['survived']} | {total['equivalent']} | "
                f"{score} | {total['seconds']} | |")
    parts = [f"# Mutation testing ({report['tool']})", "",
             f"{report['machine']}; {report['children']} mutants at a time; tests: `{' '.join(FAST)}` of the files "
             "listed per module in benchmarks/mutation.py. Score = killed / (mutants - equivalent).",
             *([""] + [report["note"]] if report.get("note") else []), "", *rows]
    notes = [f"- {name}: {found['note']}" for name, found in report["modules"].items() if found.get("note")]
    parts += ["", *notes] if notes else []
    for name, found in report["modules"].items():
        for title, entries in (("Survivors", found["survivors"]), ("Equivalent mutants", found["equivalents"])):
            if not entries:
                continue
            parts += ["", f"## {name}: {title.lower()}"]
            for entry in entries:
                why = f" Equivalent: {entry['reason']}" if "reason" in entry else ""
                parts += ["", f"`{entry['mutant']}` ({entry['function']}, {entry['status']}).{why}", "",
                          "```diff", entry["diff"], "```"]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", nargs="+", default=["default"],
                        help=f"names of MODULES ({', '.join(MODULES)}), 'default' (all but the later ones) or 'all'")
    parser.add_argument("--children", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "mutation.json")
    parser.add_argument("--fresh", action="store_true", help="drop the modules of the existing report not run now")
    parser.add_argument("--survivors-of", type=Path,
                        help="an earlier report of the same sources: run only its survivors, carry its kills over")
    parser.add_argument("--sample", type=int, help="test only this many of each module's mutants, drawn at random: "
                                                   "an estimated score with its interval")
    args = parser.parse_args(argv)
    if args.sample is not None and (args.sample < 1 or args.survivors_of):
        parser.error("--sample takes a positive count and runs whole modules (not with --survivors-of)")
    if args.modules == ["default"]:
        names = [name for name, module in MODULES.items() if not module.later]
    elif args.modules == ["all"]:
        names = sorted(MODULES, key=lambda name: MODULES[name].later)
    else:
        unknown = [name for name in args.modules if name not in MODULES]
        if unknown:
            parser.error(f"unknown module(s) {unknown}; choose from {list(MODULES)}, 'default' or 'all'")
        names = args.modules
    equivalents = load_equivalents()
    earlier = json.loads(args.survivors_of.read_text())["modules"] if args.survivors_of else {}
    modules = kept_modules(args.out, names) if not args.fresh and args.out.exists() else {}
    for name in names:
        previous = earlier.get(name) if args.survivors_of else None
        if previous is not None and previous["mutants"] == 0:
            previous = None  # nothing ran before: run it whole
        if previous is not None and not source_unchanged(MODULES[name].path, previous["commit"]):
            raise SystemExit(f"--survivors-of: {MODULES[name].path} changed since {previous['commit'][:7]}, which "
                             f"{args.survivors_of} measured for {name}; its mutants are others now: run {name} whole")
        modules[name] = {"commit": git_commit(),
                         **run_module(name, MODULES[name], args.children, equivalents, previous, args.sample)}
        found = modules[name]
        print(f"{name}: {found['killed']} of {found['mutants'] - found['equivalent']} killed "
              f"({found['survived']} survived, {found['equivalent']} equivalent), {found['seconds']} s", flush=True)
        write_report(args, modules)  # after each module: a long run keeps its part
    return 0


def source_unchanged(path: str, commit: str, root: Path = REPO_ROOT) -> bool:
    """Whether `path` in the working tree is the file an earlier report measured at `commit` (mutant names
    and kills carry over only then)."""
    return subprocess.run(["git", "diff", "--quiet", commit.removesuffix("+dirty"), "--", path],
                          cwd=root).returncode == 0


def kept_modules(out: Path, rerun: list[str]) -> dict:
    """The existing report's modules that this run does not measure again, each with the commit it measured."""
    report = json.loads(out.read_text())
    return {name: {"commit": report["commit"], **found} for name, found in report["modules"].items()
            if name not in rerun}


def write_report(args: argparse.Namespace, modules: dict) -> None:
    total = {key: sum(m[key] for m in modules.values()) for key in ("mutants", "killed", "survived", "equivalent")}
    scored = total["mutants"] - total["equivalent"]
    total["score"] = round(total["killed"] / scored, 4) if scored else None
    total["seconds"] = round(sum(m["seconds"] or 0.0 for m in modules.values()), 1)
    report = {
        "tool": f"mutmut {metadata.version('mutmut')}",
        "commit": git_commit(),
        "machine": machine_description(),
        "load_average_1min": os.getloadavg()[0],  # at the time of writing: the machine is shared
        "children": args.children,
        "survivors_of": str(args.survivors_of) if args.survivors_of else None,
        "total": total,
        "modules": modules,
    }
    write_json(args.out, report)
    with atomic_path(args.out.with_suffix(".md")) as tmp:
        tmp.write_text(markdown(report))


if __name__ == "__main__":
    sys.exit(main())
