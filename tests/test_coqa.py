"""CoQA: lm-eval's prompt and scoring protocol, SQuAD normalisation, every accepted layout."""

from __future__ import annotations

import importlib
import json
import sys
import types
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamax_bench.generation.tasks import Sample, get_task
from dynamax_bench.generation.tasks.coqa import compute_scores
from dynamax_bench.generation.answers import compute_exact, compute_f1, get_tokens, normalize_answer

from .conftest import shared_data

STORY = {
    "source": "test", "story": "Ann has a red bike. She rides it to school.",
    "questions": ["What does Ann have?", "What colour is it?", "Where does she ride it?", "Who rides it?",
                  "Is it blue?"],
    "answers": {"input_text": ["a bike", "red", "to school", "Ann", "no"], "answer_start": [0, 0, 0, 0, 0],
                "answer_end": [1, 1, 1, 1, 1]},
}


def test_squad_normalisation_on_hand_computed_cases() -> None:
    assert compute_exact("The Bike!", "bike") == 1
    assert compute_exact("a red bike", "red bike.") == 1
    # "she rides to the school" -> 4 tokens after dropping "the"; 2 shared: P = 1/2, R = 1, F1 = 2/3
    assert compute_f1("to school", "she rides to the school") == pytest.approx(2 / 3)
    assert compute_f1("", "") == 1.0 and compute_f1("red", "") == 0.0


def test_leave_one_out_protocol_equals_lm_evals_compute_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    """lm-eval's coqa/utils.py imports transformers' squad_metrics, which transformers 5 dropped;
    given the same SQuAD functions, its multi-gold protocol must give our numbers."""
    shim = types.ModuleType("transformers.data.metrics.squad_metrics")
    shim.compute_exact, shim.compute_f1 = compute_exact, compute_f1
    for name in ("transformers.data", "transformers.data.metrics"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "transformers.data.metrics.squad_metrics", shim)
    monkeypatch.delitem(sys.modules, "lm_eval.tasks.coqa.utils", raising=False)
    lm_eval_coqa = importlib.import_module("lm_eval.tasks.coqa.utils")
    for golds, pred in [(["red"], "red"), (["a bike", "bike", "a red bike"], "the bike"), (["Ann", "Ann Smith"], "Smith")]:
        assert compute_scores(golds, pred) == pytest.approx(lm_eval_coqa.compute_scores(golds, pred))


def test_prompt_is_the_story_then_the_conversation(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(STORY) + "\n")
    last = get_task("coqa").load({"kind": "local", "path": str(path)})
    assert len(last) == 1
    assert last[0].prompt.endswith("Q: Who rides it?\n\nA: Ann\n\nQ: Is it blue?\n\nA:")
    every = get_task("coqa", turns="all").load({"kind": "local", "path": str(path)})
    assert len(every) == 5 and every[0].prompt == STORY["story"] + "\n\nQ: What does Ann have?\n\nA:"
    assert get_task("coqa").score_one(every[1], " Red\nQ: more")["em"] == 1.0  # first line only


def test_embedded_set_has_ten_stories_of_five_turns_or_more() -> None:
    task = get_task("coqa")
    docs = task.read({"kind": "embedded"})
    assert len(docs) >= 10 and all(len(d["questions"]) >= 5 for d in docs)


def test_reads_the_real_samples_in_both_layouts() -> None:
    hf = get_task("coqa").load({"kind": "local", "path": str(shared_data("coqa.validation.jsonl"))})
    original = get_task("coqa").load({"kind": "local", "path": str(shared_data("coqa-dev-v1.0.first_story.json"))})
    assert hf and original
    assert original[0].prompt.endswith("A:")


def test_malformed_record_names_file_line_and_field(tmp_path: Path) -> None:
    bad = {**STORY, "answers": {"input_text": ["a bike"]}}
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(STORY) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=r"c\.jsonl:2: field 'answers' has 1 turns for 5 questions"):
        get_task("coqa").load({"kind": "local", "path": str(path)})


answers = st.text(alphabet="ab .,!The", max_size=12)


@given(answers, answers)
def test_squad_scores_obey_their_laws(gold: str, prediction: str) -> None:
    assert normalize_answer(normalize_answer(gold)) == normalize_answer(gold)  # idempotent
    f1 = compute_f1(gold, prediction)
    assert 0.0 <= f1 <= 1.0 and f1 == pytest.approx(compute_f1(prediction, gold))  # symmetric
    assert compute_exact(gold, gold) == 1 and compute_f1(gold, gold) == 1.0
    if compute_exact(gold, prediction):
        assert f1 == 1.0


def test_squad_normalisation_drops_articles_punctuation_and_case_only() -> None:
    assert normalize_answer("  The  Anne, an Apple; A  thesis ") == "anne apple thesis"
    assert normalize_answer("theatre, another") == "theatre another"  # only whole-word articles
    assert get_tokens("") == [] and get_tokens("A b-c") == ["bc"]
    assert compute_f1("red red bike", "red bike bike") == pytest.approx(2 / 3)  # counts, not sets


def test_leave_one_out_scores_by_hand() -> None:
    # golds: "red", "red bike"; prediction "bike": leave out each gold, best of the rest, mean
    assert compute_scores(["red", "red bike"], "bike") == {"em": 0.0, "f1": pytest.approx((2 / 3 + 0.0) / 2)}
    assert compute_scores(["red"], "Red.") == {"em": 1.0, "f1": 1.0}
    assert compute_scores(["a", "b", "c"], "b") == {"em": pytest.approx(2 / 3), "f1": pytest.approx(2 / 3)}


def test_gold_answers_add_additional_answers_that_differ_in_more_than_case() -> None:
    task = get_task("coqa")
    doc = {"answers": ["a bike", "Red"], "additional": [["x", "red"], ["y", "crimson"], ["z", "Crimson"]]}
    assert task.gold_answers(doc) == ["Red", "crimson"]
    # the first line only; leave-one-out over ["Red", "crimson"]: 1 without "Red", 0 without "crimson"
    assert task.score_one(Sample("s", "", doc), " crimson\nQ: more") == {"em": 0.5, "f1": 0.5}
    turns = get_task("coqa", turns="all").expand({"id": "s", "story": "t", "questions": ["q1", "q2"],
                                                   "answers": ["a1", "a2"], "additional": [["b1", "b2"]]})
    assert [(t["id"], t["questions"], t["answers"], t["additional"]) for t in turns] == [
        ("s-t1", ["q1"], ["a1"], [["b1"]]), ("s-t2", ["q1", "q2"], ["a1", "a2"], [["b1", "b2"]])]
    with pytest.raises(ValueError, match="turns must be one of"):
        get_task("coqa", turns="first")


QUESTIONS, ANSWERS = ["Who?", "What?", "Where?"], ["Ann", "a bike", "to school"]


@pytest.mark.parametrize("layout", ["huggingface", "lm-eval", "original"])
def test_every_layout_reads_to_the_same_turns(layout: str) -> None:
    """Hugging Face `coqa` (answers a dict of lists), lm-eval's EleutherAI/coqa (questions too, and
    additional answers per annotator), the original CoQA JSON (lists of objects)."""
    record = {
        "huggingface": {"story": "s", "questions": QUESTIONS, "answers": {"input_text": ANSWERS}},
        "lm-eval": {"id": "story-7", "story": "s", "questions": {"input_text": QUESTIONS, "turn_id": [1, 2, 3]},
                    "answers": {"input_text": ANSWERS},
                    "additional_answers": {"0": {"input_text": ["Anne", "bike", "school"]},
                                           "1": {"input_text": ["ann", "a bike", "the school"]}}},
        "original": {"id": "story-7", "story": "s", "questions": [{"input_text": q, "turn_id": i}
                                                                  for i, q in enumerate(QUESTIONS)],
                     "answers": [{"input_text": a} for a in ANSWERS]},
    }[layout]
    doc = get_task("coqa").parse(record, "f.jsonl:3", 4)
    assert (doc["story"], doc["questions"], doc["answers"]) == ("s", QUESTIONS, ANSWERS)
    assert doc["id"] == ("coqa-00004" if layout == "huggingface" else "story-7")  # the record's id, else its index
    assert doc["additional"] == ([["Anne", "bike", "school"], ["ann", "a bike", "the school"]]
                                 if layout == "lm-eval" else [])


def test_the_target_and_golds_are_the_last_turns_answers() -> None:
    task = get_task("coqa")
    doc = {"id": "s", "story": "t", "questions": QUESTIONS, "answers": ANSWERS,
           "additional": [["x", "y", "school"], ["x", "z", "To school"]]}
    assert task.doc_to_target(doc) == "to school"
    assert task.gold_answers(doc) == ["to school", "school"]  # "To school" differs in case only
    assert [turn["group"] for turn in get_task("coqa", turns="all").expand(doc)] == ["s", "s", "s"]
    # the first line of the output, whole ("to" alone would score EM 0); leave-one-out over the two golds:
    # without "to school" F1 2/3 against "school", without "school" 1
    assert task.score_one(Sample("s", "", doc), " to school\nQ: next") == {"em": 0.5, "f1": pytest.approx(5 / 6)}


@pytest.mark.parametrize(("change", "message"), [
    ({"story": None}, "missing field 'story'"),
    ({"questions": None}, "missing field 'questions'"),
    ({"answers": None}, "missing field 'answers'"),
    ({"answers": ["Ann", 2, "x"]}, r"field 'answers' must be a list of strings"),
    ({"answers": {"text": ANSWERS}}, "missing field 'answers.input_text'"),
    ({"questions": [{"input_text": "Who?"}, {"turn_id": 2}, {"input_text": "Where?"}]},
     r"missing field 'questions\[1\].input_text'"),
    ({"questions": ["Who?", 2, "Where?"]}, r"field 'questions' must be a list of strings, a list of objects with "
                                           r"'input_text', or an object with an 'input_text' list$"),
    ({"answers": {"input_text": ANSWERS[:2]}}, r"field 'answers' has 2 turns for 3 questions; every question needs "
                                               r"its answer$"),
    ({"additional_answers": ["Ann"]}, r"field 'additional_answers' must be an object of answer lists$"),
    ({"additional_answers": {"0": {"input_text": ["Ann"]}}},
     r"field 'additional_answers.0' must have one answer per question$"),
    ({"additional_answers": {"0": {"input_text": ["Ann", 3, "x"]}}}, r"field 'additional_answers.0' must be a list"),
])
def test_each_malformed_field_is_named_with_file_and_line(change: dict, message: str) -> None:
    record = {"story": "s", "questions": QUESTIONS, "answers": {"input_text": ANSWERS}}
    record = {key: value for key, value in {**record, **change}.items() if value is not None}
    with pytest.raises(ValueError, match=rf"^f\.jsonl:3: {message}"):
        get_task("coqa").parse(record, "f.jsonl:3", 4)
