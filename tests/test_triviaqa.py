"""TriviaQA: loaders for the embedded, local (HF schema) sets; lm-eval prompt; EM/F1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dynamax_bench.generation.tasks import get_task
from dynamax_bench.generation.answers import compute_f1, normalize_answer
from dynamax_bench.generation.tasks.triviaqa import exact_match

from .conftest import shared_data


def test_embedded_set_is_complete_and_disjoint_from_fewshot() -> None:
    task = get_task("triviaqa")
    samples = task.load({"kind": "embedded"})
    shots = task.read({"kind": "embedded", "split": "train"})
    assert len(samples) >= 60
    assert len({s.id for s in samples}) == len(samples)
    assert not {s.target["question"] for s in samples} & {d["question"] for d in shots}


def test_prompt_follows_lm_eval() -> None:
    task = get_task("triviaqa")
    (sample,) = task.load({"kind": "embedded"}, limit=1)
    assert sample.prompt == "Question: What is the capital city of France??\nAnswer:"
    assert task.stop_strings == ("\n", ".", ",")


def test_fewshot_examples_are_drawn_per_sample_from_the_pool_with_lm_evals_seed() -> None:
    """(tests/test_lmeval_tasks.py checks the draws against lm-eval's own sampler.)"""
    task = get_task("triviaqa")
    pool = {task.doc_to_text(d) + " " + task.doc_to_target(d) + "\n\n"
            for d in task.read({"kind": "embedded", "split": "train"})}
    samples = task.load({"kind": "embedded"}, limit=12, num_fewshot=3)
    contexts = [s.prompt[: -len(task.doc_to_text(s.target))] for s in samples]
    for context in contexts:
        shots = [block + "\n\n" for block in context.split("\n\n")[:-1]]
        assert len(shots) == 3 and set(shots) <= pool
    assert len(set(contexts)) > 1  # not the same first three for every sample
    assert [s.prompt for s in task.load({"kind": "embedded"}, limit=12, num_fewshot=3)] == [s.prompt for s in samples]


def test_a_fewshot_pool_holding_an_evaluated_question_stops_the_run(tmp_path: Path) -> None:
    task = get_task("triviaqa")
    evaluated = task.load({"kind": "embedded"}, limit=3)
    pool = tmp_path / "pool.jsonl"
    records = [{"question": f"Filler question {i}?", "answer": {"aliases": ["x"]}} for i in range(5)]
    records.append({"question": evaluated[2].target["question"], "answer": {"aliases": ["y"]}})
    pool.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ValueError, match=r"few-shot pool .* holds 1 evaluated samples.*fewshot_source"):
        task.load({"kind": "embedded"}, limit=3, num_fewshot=2, fewshot_source={"kind": "local", "path": str(pool)})


def test_reads_the_real_sample() -> None:
    samples = get_task("triviaqa").load({"kind": "local", "path": str(shared_data("triviaqa_rc_nocontext.validation.jsonl"))})
    assert len(samples) == 600
    assert samples[0].target["aliases"] == ["David Seville"]


def test_malformed_record_names_file_line_and_field(tmp_path: Path) -> None:
    good = {"question": "Q?", "answer": {"aliases": ["A"]}}
    bad = {"question": "Q2?", "answer": {"value": "B"}}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=rf"{path}:2: missing field 'answer.aliases'"):
        get_task("triviaqa").load({"kind": "local", "path": str(path)})


@pytest.mark.parametrize(("record", "message"), [
    ({"answer": {"aliases": ["A"]}}, "missing field 'question'"),
    ({"question": "Q?"}, "missing field 'answer'"),
    ({"question": "Q?", "answer": {"aliases": []}}, "field 'answer.aliases' must be a non-empty list of strings"),
    ({"question": "Q?", "answer": {"aliases": ["A", 3]}}, "field 'answer.aliases' must be a non-empty list of strings"),
])
def test_each_malformed_field_is_named_with_its_line(tmp_path: Path, record: dict, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(ValueError, match=rf"^{path}:1: {message}"):
        get_task("triviaqa").load({"kind": "local", "path": str(path)})


def test_metrics_on_fixed_strings() -> None:
    assert normalize_answer("The Campbell-Bannerman!") == "campbellbannerman"  # SQuAD's: punctuation removed
    assert exact_match("Paris.", ["paris"]) == 1.0
    assert exact_match("Paris, France", ["Paris"]) == 0.0
    assert compute_f1("da Vinci", "Leonardo da Vinci") == pytest.approx(0.8)
    assert compute_f1("Paris", "nothing") == 0.0
    task = get_task("triviaqa")
    sample = task.load({"kind": "embedded"}, limit=1)[0]
    assert task.score_one(sample, " Paris, France")["f1"] == pytest.approx(2 / 3)  # best over the aliases


@pytest.mark.parametrize("output", [" Paris.", "Paris", " paris ", "Paris .", "Paris, France", " The Paris"])
def test_exact_match_equals_lm_evals_own_metric(output: str) -> None:
    """lm-eval's triviaqa: remove_whitespace filter, then exact_match(ignore_case, ignore_punctuation)."""
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import WhitespaceFilter

    aliases = ["Paris", "paris", "Paris (France)"]
    (filtered,), = WhitespaceFilter().apply([[output]], [{}])
    reference = max(
        exact_match_hf_evaluate([filtered], [alias], ignore_case=True, ignore_punctuation=True)["exact_match"]
        for alias in aliases
    )
    task = get_task("triviaqa")
    sample = task.load({"kind": "embedded"}, limit=1)[0]
    sample.target["aliases"] = aliases
    assert task.score_one(sample, output)["em"] == reference
