"""Where a task's records come from (generation/tasks/base.py): the hub (datasets, mocked here: no
network in tests), local JSON and JSONL files, the embedded splits, and the few-shot pool's source.
Each bad source stops with a message that names the file or dataset and the fix."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from dynamax_bench.generation.tasks import get_task

RECORDS = [{"question": "Q1?", "answer": {"aliases": ["A"]}}, {"question": "Q2?", "answer": {"aliases": ["B"]}}]


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """`datasets.load_dataset` answering RECORDS and recording how it was called."""
    calls: list[tuple] = []

    def load_dataset(path, name=None, *, split, revision=None):
        calls.append((path, name, split, revision))
        if path == "offline/dataset":
            raise ConnectionError("no route to host")
        return list(RECORDS)

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


def test_a_hub_source_fills_the_tasks_defaults_and_names_each_row(hub: list[tuple]) -> None:
    task = get_task("triviaqa")
    docs = task.read({"kind": "hub", "split": "validation[1000:2000]", "revision": "abc123"})
    assert hub == [("mandarjoshi/trivia_qa", "rc.nocontext", "validation[1000:2000]", "abc123")]
    assert [doc["question"] for doc in docs] == ["Q1?", "Q2?"]
    assert [doc["id"] for doc in docs] == ["triviaqa-00000", "triviaqa-00001"]
    hub.clear()
    task.read({"kind": "hub", "path": "other/trivia", "name": None, "split": "train"})
    assert hub == [("other/trivia", None, "train", None)]


def test_a_hub_row_that_fails_to_parse_names_the_dataset_and_row(hub: list[tuple], monkeypatch) -> None:
    monkeypatch.setattr(sys.modules["datasets"], "load_dataset",
                        lambda *args, **kwargs: [RECORDS[0], {"question": "Q2?"}])
    with pytest.raises(ValueError, match=r"^mandarjoshi/trivia_qa\[1\]: missing field 'answer'$"):
        get_task("triviaqa").read({"kind": "hub"})


def test_an_unreachable_hub_says_how_to_run_offline(hub: list[tuple]) -> None:
    with pytest.raises(RuntimeError, match=r"^task coqa: cannot load offline/dataset \(None, validation\) from the "
                                           r"Hugging Face hub: no route to host\. Offline, export it to JSONL on a "
                                           r"machine with network and point the task's source at `kind: local, path: "
                                           r"<file>`\.$"):
        get_task("coqa").read({"kind": "hub", "path": "offline/dataset"})
    with pytest.raises(RuntimeError, match=r"^task triviaqa: cannot load offline/dataset \(rc\.nocontext, "
                                           r"validation\) from the Hugging Face hub"):  # the task's default config
        get_task("triviaqa").read({"kind": "hub", "path": "offline/dataset"})


def test_few_shot_examples_come_from_the_train_split_unless_named(hub: list[tuple]) -> None:
    task = get_task("triviaqa")
    assert task.default_fewshot_source({"kind": "hub", "path": "p", "split": "validation"}) == {
        "kind": "hub", "path": "p", "split": "train"}
    assert task.default_fewshot_source({"kind": "embedded"}) == {"kind": "embedded", "split": "train"}
    assert task.pool_source({"kind": "embedded"}, {"kind": "local", "path": "x"}) == {"kind": "embedded", "split": "train"}
    assert task.pool_source({"kind": "embedded", "split": "calibration"}, {"kind": "hub"}) == {
        "kind": "embedded", "split": "calibration"}
    hub.clear()
    with pytest.raises(ValueError, match="few-shot pool"):  # the mocked train split holds the evaluated rows
        task.load({"kind": "hub", "split": "validation"}, limit=1, num_fewshot=1)
    assert [call[2] for call in hub] == ["validation", "train"]


def test_a_local_file_without_a_few_shot_source_asks_for_one(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    with pytest.raises(ValueError, match=r"^task triviaqa: few-shot examples need a `fewshot_source` for a local "
                                         r"data file$"):
        get_task("triviaqa").load({"kind": "local", "path": str(path)}, num_fewshot=1)
    with pytest.raises(ValueError, match=r"^unknown task source kind 'http'; use embedded, local or hub$"):
        get_task("triviaqa").read({"kind": "http"})


@pytest.mark.parametrize("layout", ["list", "wrapped"])
def test_a_local_json_file_is_a_list_or_an_object_with_data(tmp_path: Path, layout: str) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(RECORDS if layout == "list" else {"version": "1.0", "data": RECORDS}))
    assert [doc["question"] for doc in get_task("triviaqa").read({"kind": "local", "path": str(path)})] == ["Q1?", "Q2?"]
    path.write_text(json.dumps([RECORDS[0], {"question": "Q2?"}]))
    with pytest.raises(ValueError, match=rf"^{path}:record 1: missing field 'answer'$"):
        get_task("triviaqa").read({"kind": "local", "path": str(path)})


def test_a_local_json_record_that_is_no_object_is_named_by_its_index(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps([RECORDS[0], 1]))
    with pytest.raises(ValueError, match=rf"^{path}:record 1: expected a JSON object, got int$"):
        get_task("triviaqa").read({"kind": "local", "path": str(path)})


def test_coqa_turns_carry_their_story_as_group() -> None:
    """The grouped bootstrap and the calibration split resample a story's turns together."""
    samples = get_task("coqa", turns="all").load({"kind": "embedded"}, limit=12)
    groups = [s.group for s in samples]
    assert all(groups) and groups == [s.target["group"] for s in samples]
    assert len(set(groups)) < len(samples)  # some story has several turns


@pytest.mark.parametrize("content", [{"version": "1.0", "questions": RECORDS}, "Q1?"])
def test_a_local_json_file_of_another_shape_is_refused(tmp_path: Path, content) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=rf"^{path}: expected a list of records \(or an object with 'data'\)$"):
        get_task("triviaqa").read({"kind": "local", "path": str(path)})


def test_jsonl_errors_name_the_line_blank_lines_counted(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n\n" + json.dumps({"question": "Q2?"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{path}:3: missing field 'answer'$"):
        get_task("triviaqa").read({"kind": "local", "path": str(path)})
    path.write_text(json.dumps([1]) + "\n")
    with pytest.raises(ValueError, match=rf"^{path}:1: expected a JSON object, got list$"):
        get_task("triviaqa").read({"kind": "local", "path": str(path)})
    path.write_text(json.dumps({"question": 3, "answer": {}}) + "\n")
    with pytest.raises(ValueError, match=rf"^{path}:1: field 'question' must be str, got int$"):
        get_task("triviaqa").read({"kind": "local", "path": str(path)})
    path.write_text(json.dumps({"story": "s", "questions": 3, "answers": []}) + "\n")
    with pytest.raises(ValueError, match=rf"^{path}:1: field 'questions' must be list or dict, got int$"):
        get_task("coqa").read({"kind": "local", "path": str(path)})
    with pytest.raises(FileNotFoundError, match=rf"^task triviaqa: data file {tmp_path / 'none.jsonl'} not found$"):
        get_task("triviaqa").read({"kind": "local", "path": str(tmp_path / "none.jsonl")})


def test_embedded_splits_and_few_shot_pools_are_named_when_missing() -> None:
    with pytest.raises(ValueError, match=r"^task coqa has no embedded 'train' split; use one of \['validation', "
                                         r"'calibration'\]$"):
        get_task("coqa").read({"kind": "embedded", "split": "train"})
    assert get_task("triviaqa").read({"kind": "embedded", "split": "calibration"})[0]["id"].startswith("dynamax_tqa_cal")
    with pytest.raises(ValueError, match=r"^task coqa takes no few-shot examples \(lm-eval's prompt for it is fixed\); "
                                         r"set tasks.coqa.num_fewshot to 0$"):
        get_task("coqa").load({"kind": "embedded"}, num_fewshot=1)


def test_the_pool_must_hold_one_more_example_than_is_shown(tmp_path: Path) -> None:
    """lm-eval's sampler draws n + 1 and drops the evaluated document: a pool of n + 1 is enough."""
    task = get_task("triviaqa")
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"question": f"Filler {i}?", "answer": {"aliases": ["x"]}}) + "\n"
                            for i in range(3)))
    samples = task.load({"kind": "embedded"}, limit=2, num_fewshot=2, fewshot_source={"kind": "local", "path": str(pool)})
    assert all(s.prompt.count("Question: Filler") == 2 for s in samples)
    assert [s.group for s in samples] == ["", ""]
    with pytest.raises(ValueError, match=r"^task triviaqa: 3 few-shot examples asked; lm-eval's sampler draws 4 from "
                                         r"the pool, which has 3$"):
        task.load({"kind": "embedded"}, limit=2, num_fewshot=3, fewshot_source={"kind": "local", "path": str(pool)})


def test_a_pool_sharing_evaluated_questions_names_the_first_three(tmp_path: Path) -> None:
    task = get_task("triviaqa")
    evaluated = task.load({"kind": "embedded"}, limit=5)
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"question": s.target["question"], "answer": {"aliases": ["x"]}}) + "\n"
                            for s in evaluated))
    ids = [s.id for s in evaluated]
    with pytest.raises(ValueError) as err:
        task.load({"kind": "embedded"}, limit=5, num_fewshot=1, fewshot_source={"kind": "local", "path": str(pool)})
    assert str(err.value).endswith(f"holds 5 evaluated samples (e.g. {ids[:3]}); point tasks.triviaqa.fewshot_source "
                                   "at examples disjoint from the evaluated ones, or remove these from the pool")
    # the same question up to case and spacing counts as the same question
    pool.write_text(json.dumps({"question": "  " + evaluated[0].target["question"].upper().replace(" ", "   "),
                                "answer": {"aliases": ["x"]}}) + "\n" + json.dumps(RECORDS[0]) + "\n")
    with pytest.raises(ValueError, match="holds 1 evaluated samples"):
        task.load({"kind": "embedded"}, limit=5, num_fewshot=1, fewshot_source={"kind": "local", "path": str(pool)})
