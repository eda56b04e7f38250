"""The calibration splits of the embedded sets: what the builders write, parsed by each task,
disjoint from the evaluated samples and the few-shot pool, CoQA rationale spans exact, TruthfulQA
questions not copied from TruthfulQA; a profile reads them with `source: {kind: embedded, split:
calibration}`, and an unset split is the evaluation set as before."""

from __future__ import annotations

import copy
import difflib
from types import ModuleType

import pytest

from dynamax_bench.config import ConfigError, load_schema
from dynamax_bench.data.build import coqa as build_coqa
from dynamax_bench.data.build import triviaqa as build_triviaqa
from dynamax_bench.data.build import truthfulqa as build_truthfulqa
from dynamax_bench.files import read_jsonl
from dynamax_bench.generation.tasks import TASKS, get_task, load_samples
from dynamax_bench.generation.tasks.base import EMBEDDED_SPLITS, Task
from dynamax_bench.generation.answers import normalize_answer
from dynamax_bench.profile_checks import validate_profile
from dynamax_bench.spec import task_spec

from .conftest import shared_data

BUILDERS: dict[str, ModuleType] = {"triviaqa": build_triviaqa, "truthfulqa": build_truthfulqa, "coqa": build_coqa}
SIZES = {"triviaqa": 64, "truthfulqa": 53, "coqa": 40}  # calibration records (CoQA: stories of two turns each)
CALIBRATION = {"kind": "embedded", "split": "calibration"}


def splits(task: Task) -> list[str]:
    return [split for split in EMBEDDED_SPLITS if split != "train" or task.embedded_fewshot_file is not None]


def questions(task: Task, split: str) -> set[str]:
    """The normalised question texts of one embedded split (every turn of a CoQA story)."""
    docs = task.read({"kind": "embedded", "split": split})
    return {normalize_answer(q) for doc in docs for q in doc.get("questions", [doc.get("question")])}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_committed_files_are_what_the_builders_write(name: str, tmp_path) -> None:
    written = BUILDERS[name].write(tmp_path)
    assert {path.name for path in written} == {get_task(name).embedded_path(s).name for s in splits(get_task(name))}
    for path in written:
        committed = build_triviaqa.DATA / path.name
        assert path.read_bytes() == committed.read_bytes(), (
            f"{committed} is not what its builder writes: run python -m dynamax_bench.data.build.{name}")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_calibration_record_parses_with_the_tasks_own_parser(name: str) -> None:
    task = get_task(name)
    docs = task.read(CALIBRATION)
    assert len(docs) == SIZES[name]
    if name == "coqa":
        assert all(len(doc["questions"]) == 2 for doc in docs)
        assert len(get_task(name, turns="all").load(CALIBRATION)) == 80
    assert len({doc["id"] for doc in docs}) == len(docs)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_no_calibration_question_is_evaluated_or_a_fewshot_example(name: str) -> None:
    task = get_task(name)
    calibration = questions(task, "calibration")
    assert len(calibration) == (80 if name == "coqa" else SIZES[name])  # no question twice
    for split in splits(task):
        if split != "calibration":
            shared = calibration & questions(task, split)
            assert not shared, f"{name}: calibration questions also in the {split} split: {sorted(shared)[:3]}"


def test_no_coqa_calibration_story_is_an_evaluation_story() -> None:
    task = get_task("coqa")
    evaluated = {normalize_answer(doc["story"]) for doc in task.read({"kind": "embedded"})}
    assert not [doc["id"] for doc in task.read(CALIBRATION) if normalize_answer(doc["story"]) in evaluated]


@pytest.mark.parametrize(("split", "stories"), [("validation", build_coqa.STORIES), ("calibration", build_coqa.CALIBRATION)])
def test_coqa_answer_offsets_delimit_the_rationale_in_the_story(split: str, stories: list) -> None:
    records = read_jsonl(get_task("coqa").embedded_path(split))
    assert len(records) == len(stories)
    for record, (_, story, turns) in zip(records, stories):
        answers = record["answers"]
        assert record["story"] == story
        assert answers["input_text"] == [answer for _, answer, _ in turns]
        for (question, _, rationale), start, end in zip(turns, answers["answer_start"], answers["answer_end"], strict=True):
            assert 0 <= start < end <= len(story), question
            assert story[start:end] == rationale, question
            assert start == 0 or not story[start - 1].isalnum(), f"{question}: span starts inside a word"
            assert end == len(story) or not story[end].isalnum(), f"{question}: span ends inside a word"


def test_no_truthfulqa_calibration_question_copies_a_truthfulqa_question() -> None:
    real = [normalize_answer(r["question"]) for r in read_jsonl(shared_data("truthfulqa_generation.validation.jsonl"))]
    for question in sorted(questions(get_task("truthfulqa"), "calibration")):
        closest = max(real, key=lambda r: difflib.SequenceMatcher(None, question, r).ratio())
        assert difflib.SequenceMatcher(None, question, closest).ratio() < 0.8, (question, closest)


def test_triviaqa_calibration_answers_are_not_evaluation_or_fewshot_answers() -> None:
    task = get_task("triviaqa")
    other = {normalize_answer(a) for split in ("validation", "train")
             for doc in task.read({"kind": "embedded", "split": split}) for a in doc["aliases"]}
    assert not [doc["question"] for doc in task.read(CALIBRATION) if other & {normalize_answer(a) for a in doc["aliases"]}]


def test_a_profile_reads_the_calibration_split_and_an_unset_split_is_the_evaluation_set(smoke_config: dict) -> None:
    assert all(entry["source"] == {"kind": "embedded"} for entry in smoke_config["tasks"].values())  # no default filled in
    config = copy.deepcopy(smoke_config)
    config["tasks"]["triviaqa"]["source"] = dict(CALIBRATION)
    with pytest.raises(ConfigError, match=r"'calibration' and the evaluated 'calibration' \(its first 4 rows\) share rows 0 to 3"):
        validate_profile(config)  # thresholds calibrated on the evaluated rows: refused while calibration is on
    config["calibration"].update(consistency=[], match_pruning=False)
    validate_profile(config)
    assert config["tasks"]["triviaqa"]["source"] == CALIBRATION
    _, samples = load_samples(task_spec(config, "triviaqa"))
    _, evaluated = load_samples(task_spec(smoke_config, "triviaqa"))
    assert [s.id for s in samples] == [f"dynamax_tqa_cal_{i:03d}" for i in range(4)]  # the smoke profile's limit
    assert [s.id for s in evaluated] == [f"dynamax_tqa_{i:03d}" for i in range(4)]
    shots = {normalize_answer(doc["question"]) for doc in get_task("triviaqa").read({"kind": "embedded", "split": "train"})}
    assert all(any(q in normalize_answer(s.prompt) for q in shots) for s in samples)  # few-shot from the pool


def test_the_schema_offers_the_embedded_splits_the_tasks_know() -> None:
    embedded = next(rule["then"] for rule in load_schema()["$defs"]["task_source"]["allOf"]
                    if rule["if"]["properties"]["kind"] == {"const": "embedded"})
    assert tuple(embedded["properties"]["split"]["enum"]) == EMBEDDED_SPLITS


@pytest.mark.parametrize(("task", "source", "message"), [
    ("triviaqa", {"kind": "embedded", "split": "test"}, r'tasks.triviaqa.source.split: "test" is not one of validation, calibration, train'),
    ("coqa", {"kind": "embedded", "split": "train"},
     r"tasks.coqa.source: task coqa has no embedded 'train' split; use one of \['validation', 'calibration'\]"),
    ("triviaqa", {"kind": "embedded", "split": "train"},
     r"tasks.triviaqa.fewshot_source: 4 evaluated sample\(s\) of the embedded train set are in the few-shot pool"),
])
def test_a_bad_split_is_named(smoke_config: dict, task: str, source: dict, message: str) -> None:
    config = copy.deepcopy(smoke_config)
    config["tasks"][task]["source"] = source
    with pytest.raises(ConfigError, match=message):
        validate_profile(config)
