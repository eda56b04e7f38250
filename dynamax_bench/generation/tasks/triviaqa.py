"""TriviaQA (rc.nocontext): lm-eval's prompt, stop sequences and few-shot sampling; EM (lm-eval's
own metric) and F1 over the answer aliases.

F1 is SQuAD's token F1 (the suite's one answer normaliser, generation/answers.py), as CoQA's. TriviaQA's
own evaluation script normalises differently: punctuation (with '_' and the quotes ‘’´`) becomes
a space rather than nothing, so there 'sixty-six' and 'sixty six' match and here they do not.
"""

from __future__ import annotations


from dynamax_bench.generation.tasks.base import Sample, Task, require
from dynamax_bench.generation.answers import compute_f1


def exact_match(prediction: str, aliases: list[str]) -> float:
    """lm-eval's triviaqa metric: exact_match (ignore_case, ignore_punctuation), 1 when any alias matches.

    Like lm-eval, nothing is stripped after punctuation is removed: 'Paris .' does not match.
    """
    from lm_eval.api.metrics import exact_match_hf_evaluate  # lm-eval loads only where a score is taken

    return max(float(exact_match_hf_evaluate([prediction], [alias], ignore_case=True, ignore_punctuation=True)
                     ["exact_match"]) for alias in aliases)


class TriviaQA(Task):
    name = "triviaqa"
    hub_default = {"path": "mandarjoshi/trivia_qa", "name": "rc.nocontext", "split": "validation"}
    embedded_file = "triviaqa.jsonl"
    embedded_calibration_file = "triviaqa.calibration.jsonl"
    embedded_fewshot_file = "triviaqa.train.jsonl"
    lm_eval_fewshot = 5
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
            "f1": max(compute_f1(alias, answer) for alias in aliases),
        }
