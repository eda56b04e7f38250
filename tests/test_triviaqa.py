"""TriviaQA: loaders for the embedded, local (HF schema) sets; lm-eval prompt; EM/F1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dynamax_bench.generation.tasks import get_task
from dynamax_bench.generation.tasks.triviaqa import exact_match, normalize_answer, token_f1

from .conftest import shared_data


def test_embedded_set_is_complete_and_disjoint_from_fewshot() -> None:
    task = get_task("triviaqa")
    samples = task.load({"kind": "embedded"})
    shots = task.read({"kind": "embedded", "file": "triviaqa.train.jsonl"})
    assert len(samples) >= 60
    assert len({s.id for s in samples}) == len(samples)
    assert not {s.target["question"] for s in samples} & {d["question"] for d in shots}


def test_prompt_follows_lm_eval() -> None:
    task = get_task("triviaqa")
    (sample,) = task.load({"kind": "embedded"}, limit=1, num_fewshot=1)
    assert sample.prompt == (
        "Question: What is the capital city of Portugal??\nAnswer: Lisbon\n\n"
        "Question: What is the capital city of France??\nAnswer:"
    )
    assert task.stop_strings == ("\n", ".", ",")


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


def test_metrics_on_fixed_strings() -> None:
    assert normalize_answer("The Campbell-Bannerman!") == "campbell bannerman"
    assert exact_match("Paris.", ["paris"]) == 1.0
    assert exact_match("Paris, France", ["Paris"]) == 0.0
    assert token_f1("Leonardo da Vinci", "da Vinci") == pytest.approx(0.8)
    assert token_f1("nothing", "Paris") == 0.0


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
