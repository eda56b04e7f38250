"""Evaluation tasks, by name."""

from .base import Sample, Task
from .triviaqa import TriviaQA

TASKS: dict[str, type[Task]] = {"triviaqa": TriviaQA}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name]()


__all__ = ["TASKS", "Sample", "Task", "get_task"]
