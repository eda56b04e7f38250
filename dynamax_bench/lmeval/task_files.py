"""The lm-eval task files of the suite's tasks, written from their Task classes: one source per task.

A task's prompt, few-shot pool and delimiters, stop sequences and metrics live in its class
(dynamax_bench/generation/tasks/<task>.py); its file in dynamax_bench/lmeval/tasks/ only points
lm-eval at them (through tasks/utils.py). After adding or changing a task:

    python -m dynamax_bench.lmeval.task_files

tests/test_lmeval_tasks.py fails while a committed file differs from what this writes, and checks,
through lm-eval's own TaskManager, that lm-eval builds the same prompts, stop sequences and scores.
"""

from __future__ import annotations

import inspect
import json
import sys
import textwrap
from pathlib import Path

from dynamax_bench.generation.tasks import TASKS, Task

TASK_DIR = Path(__file__).resolve().parent / "tasks"
VERSION = "2.0"  # 2.0: few-shot examples drawn per sample with lm-eval's default sampler


def lm_eval_name(task: type[Task]) -> str:
    return task.lm_eval_name or f"dynamax_{task.name}"


def option_defaults(task: type[Task]) -> dict:
    """The task's constructor options with their defaults (the file's dataset_kwargs)."""
    parameters = inspect.signature(task.__init__).parameters
    return {name: parameters[name].default for name in task.options}


def task_file(task: type[Task]) -> str:
    """The YAML text of one task's lm-eval file."""
    summary = inspect.getdoc(sys.modules[task.__module__]).split("\n\n")[0].replace("\n", " ")
    module = task.__module__.replace(".", "/") + ".py"
    note = f"Written by `python -m dynamax_bench.lmeval.task_files` from {module}: change the class, not this file."
    fn = f"!function utils.{task.name}"
    lines = [
        *[f"# {line}" for line in textwrap.wrap(summary, 98)],
        *[f"# {line}" for line in textwrap.wrap(note, 98)],
        "tag: dynamax",
        f"task: {lm_eval_name(task)}",
        f"custom_dataset: {fn}_dataset",
        f"dataset_kwargs: {json.dumps({'path': None, **option_defaults(task)})}",
        "output_type: generate_until",
        *(["training_split: train"] if task.embedded_fewshot_file else []),
        "validation_split: validation",
        f"num_fewshot: {task.lm_eval_fewshot}",
        f"doc_to_text: {fn}_text",
        f"doc_to_target: {fn}_target",
        f"target_delimiter: {json.dumps(task.target_delimiter)}",
        f"fewshot_delimiter: {json.dumps(task.fewshot_delimiter)}",
        f"process_results: {fn}_results",
        "generation_kwargs:",
        f"  until: {json.dumps(list(task.stop_strings))}",
        "  do_sample: false",
        "metric_list:",
        *[f"  - {{metric: {metric}, aggregation: mean, higher_is_better: true}}" for metric in task.metrics],
        "metadata:",
        f"  version: {VERSION}",
    ]
    return "\n".join(lines) + "\n"


def write_task_files(folder: Path = TASK_DIR) -> list[Path]:
    """Write every registered task's file; returns their paths."""
    paths = []
    for task in TASKS.values():
        path = folder / f"{lm_eval_name(task)}.yaml"
        path.write_text(task_file(task), encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_task_files():
        print(f"wrote {written}")
