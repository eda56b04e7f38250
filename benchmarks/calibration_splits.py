"""SmolLM2's full model on each embedded task's calibration split against its evaluation split: task
metrics, generated answer length and prompt length, so that thresholds calibrated on one split can
be read on the other (the splits should be alike).

It runs the DAG's own `generate` and `score` rules for the `full` cells of two scratch profiles:
config/default.yaml with every task's source set to `{kind: embedded, split: <split>}` (validation,
the evaluated samples, and calibration), baselines one job per method so that only `full` decodes.
Results go to results/split_validation/ and results/split_calibration/. The differences
(calibration minus evaluation) carry a 95% percentile bootstrap interval (scipy.stats.bootstrap,
2000 resamples, seed 0) over independent samples; CoQA's over stories (each story's mean over its
turns), since the turns of one story share it. The evaluation split's tokens are checked against
reference/default.json (the default profile's `full` cells), which must be the same run.

    python benchmarks/calibration_splits.py --out benchmarks/results/calibration_splits.json
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import fmean

import numpy as np
import yaml
from scipy import stats

from dynamax_bench.config import REPO_ROOT
from dynamax_bench.files import read_json, write_json
from dynamax_bench.generation.generate import read_generations
from dynamax_bench.generation.tasks import TASKS, load_samples
from dynamax_bench.provenance import git_commit, machine_description
from dynamax_bench.reporting.reference import HASH_FIELD, token_hash
from dynamax_bench.spec import TaskSpec

SPLITS = ("validation", "calibration")
BACKBONE = "smollm2"


def scratch_profile(split: str, folder: Path) -> Path:
    """config/default.yaml reading every task's `split`, under its own profile name (results folder)."""
    config = yaml.safe_load((REPO_ROOT / "config" / "default.yaml").read_text(encoding="utf-8"))
    config["profile"] = f"split_{split}"
    config["generation"]["baseline_jobs"] = "per_method"  # decode `full` alone, not the prune levels and the oracle
    for entry in config["tasks"].values():
        entry["source"] = {"kind": "embedded", "split": split}
    path = folder / f"split_{split}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def cell_path(split: str, task: str, stage: str = "cells", suffix: str = "json") -> Path:
    return REPO_ROOT / "results" / f"split_{split}" / stage / BACKBONE / task / f"full.{suffix}"


def run_split(split: str, folder: Path, cores: int) -> None:
    """The snakemake run that makes the split's three `full` cells (nothing to do where they exist)."""
    targets = [str(cell_path(split, task).relative_to(REPO_ROOT)) for task in TASKS]
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores), "--quiet", "rules",
                    "--configfile", str(scratch_profile(split, folder)), "--", *targets], cwd=REPO_ROOT, check=True)


def generate_seconds(split: str, task: str) -> float:
    """Wall seconds of the cell's generate job (its `benchmark:` file)."""
    with open(cell_path(split, task, "benchmarks/generate", "tsv"), encoding="utf-8") as fh:
        return float(next(csv.DictReader(fh, delimiter="\t"))["s"])


def by_turn(cell: dict) -> dict:
    """CoQA by turn position: a story's first turn has no answered turn before it in its prompt (half of
    the calibration split's turns, 10 of the evaluation split's 75), the later turns have."""
    rows: dict[str, list[int]] = {"first": [], "later": []}
    for index, sample_id in enumerate(cell["per_sample"]["ids"]):
        rows["first" if sample_id.endswith("-t1") else "later"].append(index)
    return {position: {"n": len(indices),
                       "answer_tokens_mean": fmean(cell["per_sample"]["tokens.generated"][i] for i in indices),
                       **{name: fmean(cell["per_sample"][f"metrics.{name}"][i] for i in indices) for name in ("em", "f1")}}
            for position, indices in rows.items()}


def units(cell: dict, key: str, task: str) -> np.ndarray:
    """Per-sample values of one quantity; for CoQA the mean over each story's turns (the story is the unit)."""
    values = cell["per_sample"][key]
    if task != "coqa":
        return np.asarray(values, dtype=float)
    stories: dict[str, list[float]] = {}
    for sample_id, value in zip(cell["per_sample"]["ids"], values, strict=True):
        stories.setdefault(sample_id.rsplit("-t", 1)[0], []).append(value)
    return np.asarray([fmean(turns) for turns in stories.values()])


def difference(calibration: np.ndarray, evaluation: np.ndarray) -> dict:
    """Difference of the means (calibration - evaluation) with its 95% bootstrap interval."""
    result = stats.bootstrap((calibration, evaluation), lambda a, b, axis: a.mean(axis) - b.mean(axis),
                             n_resamples=2000, confidence_level=0.95, method="percentile", rng=np.random.default_rng(0))
    low, high = result.confidence_interval
    return {"value": float(calibration.mean() - evaluation.mean()), "lo": float(low), "hi": float(high),
            "zero_inside": bool(low <= 0 <= high)}


def reference_wording(split: str) -> dict:
    """TruthfulQA's metrics reward a completion that repeats the question's words, so how close each
    split's references are to their question matters: the mean over questions of the best ROUGE-1 F
    between the question and a correct (an incorrect) answer, and the questions whose correct answer
    is the closer. A property of the data, read without a model."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1"])
    docs = TASKS["truthfulqa"]().read({"kind": "embedded", "split": split})
    best = {kind: [max(scorer.score(doc["question"], answer)["rouge1"].fmeasure for answer in doc[f"{kind}_answers"])
                   for doc in docs] for kind in ("correct", "incorrect")}
    return {"questions": len(docs), "correct_rouge1_mean": fmean(best["correct"]),
            "incorrect_rouge1_mean": fmean(best["incorrect"]),
            "correct_closer": sum(c > i for c, i in zip(best["correct"], best["incorrect"], strict=True))}


def check_current(split: str, task: str, cell: dict, records: list[dict]) -> None:
    """The cell was generated from, and scored against, today's embedded files: they are no input of
    the DAG's jobs, so Snakemake does not rerun a cell whose data file was edited since."""
    scorer, samples = load_samples(TaskSpec.from_dict(cell["task_spec"]))
    if [r["prompt"] for r in records] != [s.prompt for s in samples]:
        raise SystemExit(f"results/split_{split}/ holds {task} generations of other data; delete that folder")
    rescored = [scorer.score_one(s, r["output"]) for s, r in zip(samples, records, strict=True)]
    if any(abs(cell["per_sample"][f"metrics.{name}"][i] - scores[name]) > 1e-9
           for i, scores in enumerate(rescored) for name in scorer.metrics):
        raise SystemExit(f"results/split_{split}/cells/{BACKBONE}/{task}/full.json was scored against other "
                         "references; delete it")


def summary(split: str, task: str, cell: dict, records: list[dict]) -> dict:
    estimates = cell["intervals"]["estimates"]
    return {
        "n_samples": cell["n_samples"],
        "n_stories": len({r["id"].rsplit("-t", 1)[0] for r in records}) if task == "coqa" else None,
        "metrics": {name: {k: estimates[f"metrics.{name}"][k] for k in ("value", "lo", "hi")} for name in TASKS[task].metrics},
        "answer_tokens_mean": fmean(len(r["token_ids"]) for r in records),
        "prompt_tokens_mean": fmean(r["prompt_tokens"] for r in records),
        "loop_rate": cell["degeneration"]["loop_rate"],
        "token_sha256": token_hash(records),
        "generate_seconds": generate_seconds(split, task),
        **({"by_turn": by_turn(cell)} if task == "coqa" else {}),
        **({"reference_wording": reference_wording(split)} if task == "truthfulqa" else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for split in SPLITS:
            run_split(split, Path(folder), args.cores)
    reference = read_json(REPO_ROOT / "reference" / "default.json")["cells"]
    report = {"backbone": BACKBONE, "method": "full", "machine": machine_description(), "git_commit": git_commit(),
              "command": "python benchmarks/calibration_splits.py --out " + str(args.out),
              "timing": "generate_seconds: one run of each generate job, 2 CPU cores shared with other "
              "developers' jobs; a record of cost, not a speed comparison",
              "interval": "95% percentile bootstrap of the difference of means, 2000 resamples, "
              "seed 0, independent samples (CoQA: stories, each its mean over its turns)", "tasks": {}}
    for task in TASKS:
        cells = {split: read_json(cell_path(split, task)) for split in SPLITS}
        records = {split: read_generations(cell_path(split, task, "generations", "jsonl"))[1] for split in SPLITS}
        for split in SPLITS:
            check_current(split, task, cells[split], records[split])
        entry = {split: summary(split, task, cells[split], records[split]) for split in SPLITS}
        keys = {f"metrics.{name}": name for name in TASKS[task].metrics} | {"tokens.generated": "answer_tokens"}
        entry["difference"] = {label: difference(units(cells["calibration"], key, task), units(cells["validation"], key, task))
                               for key, label in keys.items()}
        entry["validation_is_the_default_run"] = (
            entry["validation"]["token_sha256"] == reference[f"{BACKBONE}/{task}/full"][HASH_FIELD])
        report["tasks"][task] = entry
        print(task, {s: entry[s]["metrics"] for s in SPLITS}, flush=True)
    write_json(args.out, report)


if __name__ == "__main__":
    main()
