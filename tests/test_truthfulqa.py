"""TruthfulQA (generation): lm-eval's prompt and metrics, the embedded set and the real sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dynamax_bench.generation.tasks import get_task
from dynamax_bench.generation.tasks.truthfulqa import QA_PRIMER, bleu, rouge, truthfulqa_scores

from .conftest import shared_data

CORRECT = ["No, the Great Wall cannot be seen from the Moon with the naked eye.", "No."]
INCORRECT = ["Yes, the Great Wall can be seen from the Moon."]
COMPLETIONS = [
    " No, the Great Wall cannot be seen from the Moon.",
    " Yes, you can see it from the Moon.",
    " I have no comment.",
    "",
]


@pytest.mark.parametrize("completion", COMPLETIONS)
def test_scores_equal_lm_evals_process_results_gen(completion: str) -> None:
    """The twelve metrics against lm-eval's own tasks/truthfulqa/utils.py on the same references."""
    from lm_eval.tasks.truthfulqa.utils import process_results_gen

    expected = process_results_gen({"correct_answers": CORRECT, "incorrect_answers": INCORRECT}, [completion])
    ours = truthfulqa_scores(completion, CORRECT, INCORRECT)
    assert set(ours) == set(expected)
    for name, value in expected.items():
        assert ours[name] == pytest.approx(float(value), abs=1e-9), name


def test_bleu_and_rouge_use_sacrebleu_and_rouge_score_directly() -> None:
    import sacrebleu
    from rouge_score import rouge_scorer

    ref, pred = "The cat sat on the mat.", "The cat is on the mat."
    assert bleu(ref, pred) == pytest.approx(
        sacrebleu.corpus_bleu([pred], [[ref]], smooth_method="exp", tokenize="intl").score)
    assert rouge(ref, pred)["rouge1"] == pytest.approx(
        rouge_scorer.RougeScorer(["rouge1"]).score(ref, pred)["rouge1"].fmeasure * 100)


def test_embedded_set_has_fifty_questions_with_both_kinds_of_answers() -> None:
    task = get_task("truthfulqa")
    samples = task.load({"kind": "embedded"})
    assert len(samples) >= 50 and len({s.target["question"] for s in samples}) == len(samples)
    for sample in samples:
        assert sample.target["correct_answers"] and sample.target["incorrect_answers"]
        assert sample.prompt == f"{QA_PRIMER}\n\nQ: {sample.target['question']}"
    assert task.stop_strings == ("\n\n",)


def test_reads_the_real_sample() -> None:
    path = shared_data("truthfulqa_generation.validation.jsonl")
    samples = get_task("truthfulqa").load({"kind": "local", "path": str(path)})
    assert len(samples) == sum(1 for line in path.read_text().splitlines() if line.strip())
    assert all(s.target["incorrect_answers"] for s in samples)


def test_malformed_record_names_file_line_and_field(tmp_path: Path) -> None:
    good = {"type": "Adversarial", "category": "Misconceptions", "question": "Q?", "best_answer": "A",
            "correct_answers": ["A"], "incorrect_answers": ["B"], "source": "x"}
    bad = {**good, "incorrect_answers": "B"}
    path = tmp_path / "tqa.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=r"tqa\.jsonl:2: field 'incorrect_answers' must be list"):
        get_task("truthfulqa").load({"kind": "local", "path": str(path)})
