"""Evaluation tasks, by name, and the samples a profile evaluates on each."""

from dynamax_bench.generation.tasks.base import Sample, Task
from dynamax_bench.generation.tasks.coqa import CoQA
from dynamax_bench.generation.tasks.triviaqa import TriviaQA
from dynamax_bench.generation.tasks.truthfulqa import TruthfulQA

TASKS: dict[str, type[Task]] = {"triviaqa": TriviaQA, "truthfulqa": TruthfulQA, "coqa": CoQA}


def get_task(name: str, **options) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name](**options)


def task_from_config(config: dict, name: str) -> Task:
    """The task with the options its profile entry sets (e.g. CoQA's `turns`)."""
    task_cfg = config["tasks"][name]
    return get_task(name, **{key: task_cfg[key] for key in TASKS[name].options if key in task_cfg})


def sample_limit(config: dict, name: str) -> int | None:
    """A task's own `limit`, else the profile-wide `limit` (lm-eval's --limit), else none."""
    own = config["tasks"][name].get("limit")
    return own if own is not None else config.get("limit")


def load_samples(config: dict, name: str) -> tuple[Task, list[Sample]]:
    """The task and the samples a profile evaluates on it; generate and score both read them here."""
    task = task_from_config(config, name)
    task_cfg = config["tasks"][name]
    samples = task.load(
        task_cfg["source"], sample_limit(config, name), task_cfg.get("num_fewshot", 0), task_cfg.get("fewshot_source")
    )
    return task, samples


__all__ = ["TASKS", "Sample", "Task", "get_task", "load_samples", "sample_limit", "task_from_config"]
