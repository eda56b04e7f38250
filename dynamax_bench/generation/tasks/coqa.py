"""CoQA: lm-eval's prompt (the story, then the conversation so far) and its EM / F1.

Records come in any of three layouts: Hugging Face `coqa` (questions: [str], answers: {input_text:
[...], answer_start, answer_end}), lm-eval's `EleutherAI/coqa` (questions and answers as dicts of
lists, plus `additional_answers`), or the original CoQA JSON (questions and answers as lists of
objects; a file may wrap them in {"version", "data"}).

lm-eval scores one sample per story, the last turn (`turns: last`). With `turns: all` every turn
is a sample whose prompt holds the gold history before it: more samples from few stories.
"""

from __future__ import annotations

from itertools import zip_longest
from typing import Any

from dynamax_bench.generation.tasks.base import Sample, Task, require
from dynamax_bench.generation.answers import compute_exact, compute_f1

TURNS = ("last", "all")


def compute_scores(golds: list[str], prediction: str) -> dict[str, float]:
    """lm-eval's CoQA scores: with n > 1 gold answers, the mean over the n leave-one-out sets of
    the best score against the remaining golds (the CoQA evaluation's human-comparable protocol)."""
    if len(golds) > 1:
        subsets = [golds[:i] + golds[i + 1:] for i in range(len(golds))]
    else:
        subsets = [golds]
    return {
        "em": sum(max(compute_exact(g, prediction) for g in subset) for subset in subsets) / len(subsets),
        "f1": sum(max(compute_f1(g, prediction) for g in subset) for subset in subsets) / len(subsets),
    }


def _texts(value: Any, where: str, field: str) -> list[str]:
    """input_text of every turn, from a list of strings, a list of objects, or a dict of lists."""
    if isinstance(value, dict):
        value = require(value, "input_text", list, where, field=f"{field}.input_text")
    elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
        value = [require(v, "input_text", str, where, field=f"{field}[{i}].input_text") for i, v in enumerate(value)]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(
            f"{where}: field '{field}' must be a list of strings, a list of objects with 'input_text', "
            "or an object with an 'input_text' list"
        )
    return value


class CoQA(Task):
    name = "coqa"
    hub_default = {"path": "EleutherAI/coqa", "split": "validation"}  # lm-eval's dataset_path
    embedded_file = "coqa.jsonl"
    embedded_calibration_file = "coqa.calibration.jsonl"
    stop_strings = ("\nQ:",)  # lm-eval coqa/default.yaml generation_kwargs.until
    metrics = ("em", "f1")
    options = ("turns",)

    def __init__(self, turns: str = "last") -> None:
        if turns not in TURNS:
            raise ValueError(f"task coqa: turns must be one of {list(TURNS)}, got {turns!r}")
        self.turns = turns

    def parse(self, record: dict, where: str, index: int) -> dict:
        story = require(record, "story", str, where)
        questions = _texts(require(record, "questions", (list, dict), where), where, "questions")
        answers = _texts(require(record, "answers", (list, dict), where), where, "answers")
        if not questions or len(answers) != len(questions):
            raise ValueError(
                f"{where}: field 'answers' has {len(answers)} turns for {len(questions)} questions; "
                "every question needs its answer"
            )
        additional = []
        extra = record.get("additional_answers") or {}
        if not isinstance(extra, dict):
            raise ValueError(f"{where}: field 'additional_answers' must be an object of answer lists")
        for key, value in extra.items():
            texts = _texts(value, where, f"additional_answers.{key}")
            if len(texts) != len(questions):
                raise ValueError(f"{where}: field 'additional_answers.{key}' must have one answer per question")
            additional.append(texts)
        story_id = record.get("id") or f"{self.name}-{index:05d}"
        return {"id": story_id, "story": story, "questions": questions, "answers": answers, "additional": additional}

    def expand(self, doc: dict) -> list[dict]:
        """One sample per scored turn: the story with the questions up to it and the answers before it."""
        count = len(doc["questions"])
        turns = range(1, count + 1) if self.turns == "all" else [count]
        return [
            {
                "id": f"{doc['id']}-t{turn}",
                "group": doc["id"],  # the turns of a story share it: resampled and calibrated together
                "story": doc["story"],
                "questions": doc["questions"][:turn],
                "answers": doc["answers"][:turn],
                "additional": [texts[:turn] for texts in doc["additional"]],
            }
            for turn in turns
        ]

    def doc_to_text(self, doc: dict) -> str:
        """lm-eval coqa/utils.py doc_to_text: the story, then 'Q: ...' / 'A: ...' turns, ending at 'A:'."""
        text = doc["story"] + "\n\n"
        for question, answer in zip_longest(doc["questions"], doc["answers"][:-1]):
            text += f"Q: {question}\n\n" + (f"A: {answer}\n\n" if answer is not None else "A:")
        return text

    def doc_to_target(self, doc: dict) -> str:
        return doc["answers"][-1]

    def gold_answers(self, doc: dict) -> list[str]:
        """lm-eval's doc_to_target: the answer, then the additional answers that differ from it (case-insensitively)."""
        golds = [doc["answers"][-1]]
        for texts in doc["additional"]:
            if texts[-1].lower() not in map(str.lower, golds):
                golds.append(texts[-1])
        return golds

    def score_one(self, sample: Sample, output: str) -> dict[str, float]:
        prediction = output.strip().split("\n")[0]  # lm-eval coqa process_results
        return compute_scores(self.gold_answers(sample.target), prediction)
