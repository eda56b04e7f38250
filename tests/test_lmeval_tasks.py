"""One source per task: the lm-eval task files are written from the Task classes, and lm-eval,
loading them with its own TaskManager, builds the prompts, stop sequences and scores the suite
builds, on every embedded sample."""

from __future__ import annotations

import pytest
from lm_eval.defaults import DEFAULT_OTHER_SEED

from dynamax_bench.generation.tasks import TASKS, get_task
from dynamax_bench.lmeval.task_files import TASK_DIR, lm_eval_name, task_file


@pytest.mark.parametrize("name", sorted(TASKS))
def test_committed_task_files_are_the_ones_the_classes_write(name: str) -> None:
    task = TASKS[name]
    path = TASK_DIR / f"{lm_eval_name(task)}.yaml"
    assert path.read_text(encoding="utf-8") == task_file(task), (
        f"{path} is stale: run `python -m dynamax_bench.lmeval.task_files`")


@pytest.fixture(scope="module")
def lm_eval_tasks() -> dict:
    """lm-eval's own task objects for the suite's files, with lm-eval's default few-shot seed."""
    from lm_eval.tasks import TaskManager, get_task_dict

    manager = TaskManager(include_path=str(TASK_DIR))
    return get_task_dict([lm_eval_name(task) for task in TASKS.values()], manager)


def outputs_for(sample) -> list[str]:
    """Completions to score: empty, a miss, and the gold answer as a model would write it."""
    return ["", " no idea", " " + get_task_gold(sample)]


def get_task_gold(sample) -> str:
    target = sample.target
    if "aliases" in target:
        return target["aliases"][0] + "."
    if "correct_answers" in target:
        return "\nA: " + target["correct_answers"][0]
    return target["answers"][-1] + "\nQ: next"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_lm_eval_builds_the_same_prompts_stops_and_scores(lm_eval_tasks: dict, name: str) -> None:
    cls = TASKS[name]
    lm_task = lm_eval_tasks[lm_eval_name(cls)]
    lm_task.set_fewshot_seed(DEFAULT_OTHER_SEED)  # what lm-eval's evaluator does
    lm_task.build_all_requests(limit=None, rank=0, world_size=1)
    instances = sorted(lm_task.instances, key=lambda i: i.doc_id)
    task = get_task(name)
    samples = task.load({"kind": "embedded"}, num_fewshot=cls.lm_eval_fewshot)
    assert len(instances) == len(samples) > 0
    for instance, sample in zip(instances, samples):
        context, gen_kwargs = instance.arguments
        assert context == sample.prompt, sample.id
        assert gen_kwargs["until"] == list(task.stop_strings)
        for output in outputs_for(sample):
            assert lm_task.process_results(instance.doc, [output]) == task.score_one(sample, output), (sample.id, output)


def test_fewshot_seed_is_lm_evals_default() -> None:
    from lm_eval.defaults import DEFAULT_OTHER_SEED

    from dynamax_bench.generation.tasks.base import FEWSHOT_SEED

    assert FEWSHOT_SEED == DEFAULT_OTHER_SEED
