"""A profile's task data, checked before the DAG is built (profile_checks): every local or embedded
set reads as UTF-8, yields samples, and no few-shot example is one of the evaluated samples.

Hub sets are not read here (no network at DAG-build time; their train and validation splits are
disjoint by construction); their jobs report the same errors.
"""

from __future__ import annotations

from dynamax_bench.config import ConfigError
from dynamax_bench.generation.tasks import load_samples, task_for
from dynamax_bench.spec import TaskSpec, task_spec

READABLE = ("embedded", "local")


def fewshot_overlap(spec: TaskSpec) -> list[str]:
    """Queries of the evaluated samples that are also in the task's few-shot pool (Task.in_pool,
    the check the few-shot draw itself makes), read before the samples are built."""
    if spec.num_fewshot == 0:
        return []
    task = task_for(spec)
    pool_source = task.pool_source(spec.fewshot_source, spec.source)
    if spec.source["kind"] not in READABLE or pool_source["kind"] not in READABLE:
        return []
    evaluated = [sample for doc in task.read(spec.source) for sample in task.expand(doc)][:spec.limit]
    return [" ".join(task.doc_to_text(doc).split()) for doc in task.in_pool(task.read(pool_source), evaluated)]


def where(source: dict | None, what: str) -> str:
    """A source as the user wrote it: its path, or the embedded or hub set (and its split)."""
    if not source:
        return f"the default {what}"
    if "path" in source:
        return source["path"]
    return " ".join(["the", source["kind"], *([source["split"]] if "split" in source else []), what])


def check_task_data(config: dict) -> None:
    """Every readable task set of a profile: samples load, and the few-shot pool is disjoint from them."""
    for name in config["tasks"]:
        spec = task_spec(config, name)
        if spec.source["kind"] not in READABLE:
            continue
        task = task_for(spec)
        if spec.num_fewshot and task.pool_source(spec.fewshot_source, spec.source)["kind"] == "missing":
            raise ConfigError(
                f"tasks.{name}.fewshot_source: {spec.source['path']} is a local set, so its {spec.num_fewshot} "
                f"few-shot examples need a pool of training questions: set fewshot_source to "
                f"{{kind: local, path: <train split>}} (or {{kind: embedded}}), or num_fewshot: 0")
        try:
            overlap = fewshot_overlap(spec)
        except (ValueError, FileNotFoundError) as err:
            raise ConfigError(f"tasks.{name}.source: {err}") from None
        if overlap:  # before loading the samples, whose few-shot draw stops on it with less detail
            raise ConfigError(
                f"tasks.{name}.fewshot_source: {len(overlap)} evaluated sample(s) of {where(spec.source, 'set')} are in the "
                f"few-shot pool of {where(spec.fewshot_source, 'pool')} (e.g. {overlap[0]!r}), so their answers are in their "
                f"own prompts; point fewshot_source at a training split that shares no question with the evaluated set")
        try:
            load_samples(spec)
        except (ValueError, FileNotFoundError) as err:
            raise ConfigError(f"tasks.{name}.source: {err}") from None
