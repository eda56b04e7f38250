"""Evaluation tasks, by name, and the samples a task spec selects."""

from dynamax_bench.generation.tasks.base import Sample, Task
from dynamax_bench.generation.tasks.coqa import CoQA
from dynamax_bench.generation.tasks.triviaqa import TriviaQA
from dynamax_bench.generation.tasks.truthfulqa import TruthfulQA
from dynamax_bench.spec import TaskSpec

TASKS: dict[str, type[Task]] = {"triviaqa": TriviaQA, "truthfulqa": TruthfulQA, "coqa": CoQA}


def get_task(name: str, **options) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name](**options)


def task_for(spec: TaskSpec) -> Task:
    """The task a spec names, with its task-specific options."""
    return get_task(spec.name, **{key: spec.options[key] for key in TASKS[spec.name].options if key in spec.options})


def load_samples(spec: TaskSpec) -> tuple[Task, list[Sample]]:
    """The task and the samples its spec selects; generate, score and latency all read them here."""
    task = task_for(spec)
    samples = task.load(spec.source, spec.limit, spec.num_fewshot, spec.fewshot_source)
    if not samples:
        where = spec.source.get("path") or spec.source["kind"]
        raise ValueError(f"{where}: task {spec.name} has no samples to evaluate (an empty file?); "
                         f"fix tasks.{spec.name}.source or its limit")
    return task, samples


__all__ = ["TASKS", "Sample", "Task", "get_task", "load_samples", "task_for"]
