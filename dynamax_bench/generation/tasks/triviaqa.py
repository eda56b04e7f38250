"""TriviaQA (rc.nocontext): lm-eval's prompt and stop sequences; EM and F1 over the answer aliases."""

from __future__ import annotations

import re
import string
from collections import Counter

from dynamax_bench.generation.tasks.base import Sample, Task, require

# TriviaQA's own answer normalisation (triviaqa/utils/dataset_utils.py, normalize_answer).
_PUNCTUATION = set(string.punctuation + "‘’´`")


def normalize_answer(text: str) -> str:
    text = text.replace("_", " ").lower()
    text = "".join(" " if ch in _PUNCTUATION else ch for ch in text)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split()).strip()


def token_f1(prediction: str, truth: str) -> float:
    """SQuAD-style token F1 on normalised strings (TriviaQA's f1_score)."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, aliases: list[str]) -> float:
    """lm-eval's exact_match with ignore_case and ignore_punctuation, 1 when any alias matches.

    Like lm-eval, nothing is stripped after punctuation is removed: 'Paris .' does not match.
    """
    table = str.maketrans("", "", string.punctuation)

    def clean(text: str) -> str:
        return text.lower().translate(table)

    pred = clean(prediction)
    return float(any(pred == clean(alias) for alias in aliases))


class TriviaQA(Task):
    name = "triviaqa"
    hub_default = {"path": "mandarjoshi/trivia_qa", "name": "rc.nocontext", "split": "validation"}
    embedded_file = "triviaqa.jsonl"
    embedded_fewshot_file = "triviaqa.train.jsonl"
    # lm-eval tasks/triviaqa/default.yaml: doc_to_text and generation_kwargs.until
    stop_strings = ("\n", ".", ",")
    metrics = ("em", "f1")

    def parse(self, record: dict, where: str, index: int) -> dict:
        question = require(record, "question", str, where)
        answer = require(record, "answer", dict, where)
        aliases = require(answer, "aliases", list, where, field="answer.aliases")
        if not aliases or not all(isinstance(a, str) for a in aliases):
            raise ValueError(f"{where}: field 'answer.aliases' must be a non-empty list of strings")
        return {"id": record.get("question_id") or f"{self.name}-{index:05d}", "question": question, "aliases": aliases}

    def doc_to_text(self, doc: dict) -> str:
        return f"Question: {doc['question']}?\nAnswer:"

    def doc_to_target(self, doc: dict) -> str:
        return doc["aliases"][0]

    def score_one(self, sample: Sample, output: str) -> dict[str, float]:
        answer = output.strip()  # lm-eval's remove_whitespace filter (str.strip in lm-eval 0.4.13)
        aliases = sample.target["aliases"]
        return {
            "em": exact_match(answer, aliases),
            "f1": max(token_f1(answer, alias) for alias in aliases),
        }
