"""Glue for the project's lm-eval task YAMLs: the embedded sets as datasets, prompts and metrics
from `dynamax_bench.generation.tasks`, so `lm_eval` and the DAG build the same prompts and scores.

Importing the package also registers the `dynamax` model, which lets plain `lm_eval --model
dynamax --tasks <this folder or its YAML files>` work (lm-eval resolves task files before it
builds the model); with `--include_path`, use `dynamax-lm-eval` instead.
"""

from __future__ import annotations

import datasets

import dynamax_bench.lmeval.model  # noqa: F401  (registers the `dynamax` model)
from dynamax_bench.generation.tasks import Sample, get_task


def _dataset(name: str, path: str | None, options: dict) -> dict[str, datasets.Dataset]:
    """validation: the samples (embedded set, or `path` in the Hugging Face schema); train: the few-shot pool."""
    task = get_task(name, **options)
    source = {"kind": "local", "path": path} if path else {"kind": "embedded"}
    splits = {"validation": datasets.Dataset.from_list([s.target for s in task.load(source)])}
    if task.embedded_fewshot_file is not None:
        pool = task.read({"kind": "embedded", "file": task.embedded_fewshot_file})
        splits["train"] = datasets.Dataset.from_list(pool)
    return splits


def triviaqa_dataset(path: str | None = None, **_metadata) -> dict[str, datasets.Dataset]:
    return _dataset("triviaqa", path, {})


def truthfulqa_dataset(path: str | None = None, **_metadata) -> dict[str, datasets.Dataset]:
    return _dataset("truthfulqa", path, {})


def coqa_dataset(path: str | None = None, turns: str = "last", **_metadata) -> dict[str, datasets.Dataset]:
    return _dataset("coqa", path, {"turns": turns})


def _scorer(name: str):
    task = get_task(name)

    def process_results(doc: dict, results: list[str]) -> dict[str, float]:
        return task.score_one(Sample(id=doc["id"], prompt="", target=doc), results[0])

    return task.doc_to_text, task.doc_to_target, process_results


triviaqa_text, triviaqa_target, triviaqa_results = _scorer("triviaqa")
truthfulqa_text, truthfulqa_target, truthfulqa_results = _scorer("truthfulqa")
coqa_text, coqa_target, coqa_results = _scorer("coqa")
