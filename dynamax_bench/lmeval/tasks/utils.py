"""Glue for the project's lm-eval task files (written by dynamax_bench/lmeval/task_files.py): for
every registered task, the embedded set as a dataset and the prompt and metric functions of its
class in `dynamax_bench.generation.tasks`, so `lm_eval` and the DAG build the same prompts and scores.

Importing the package also registers the `dynamax` model, which lets plain `lm_eval --model
dynamax --tasks <this folder or its YAML files>` work (lm-eval resolves task files before it
builds the model); with `--include_path`, use `dynamax-lm-eval` instead.
"""

from __future__ import annotations

from collections.abc import Callable

import datasets

import dynamax_bench.lmeval.model  # noqa: F401  (registers the `dynamax` model)
from dynamax_bench.generation.tasks import TASKS, Sample, get_task


def _dataset(name: str, path: str | None, options: dict) -> dict[str, datasets.Dataset]:
    """validation: the samples (embedded set, or `path` in the Hugging Face schema); train: the
    few-shot pool, checked disjoint from the samples as the generate rule checks it."""
    task = get_task(name, **options)
    source = {"kind": "local", "path": path} if path else {"kind": "embedded"}
    samples = task.load(source)
    splits = {"validation": datasets.Dataset.from_list([s.target for s in samples])}
    if task.embedded_fewshot_file is not None:
        pool = task.fewshot_pool({"kind": "embedded", "split": "train"}, [s.target for s in samples])
        splits["train"] = datasets.Dataset.from_list(pool)
    return splits


def _functions(name: str) -> dict[str, Callable]:
    """What a task file names: `<name>_dataset`, `<name>_text`, `<name>_target`, `<name>_results`."""
    task = get_task(name)

    def dataset(path: str | None = None, **kwargs) -> dict[str, datasets.Dataset]:
        return _dataset(name, path, {key: kwargs[key] for key in task.options if key in kwargs})  # the rest: metadata

    def process_results(doc: dict, results: list[str]) -> dict[str, float]:
        return task.score_one(Sample(id=doc["id"], prompt="", target=doc), results[0])

    return {f"{name}_dataset": dataset, f"{name}_text": task.doc_to_text, f"{name}_target": task.doc_to_target,
            f"{name}_results": process_results}


for _name in TASKS:
    globals().update(_functions(_name))
