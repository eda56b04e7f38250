"""How far the batched engine's logits and confidences sit from batch 1's: the near-tie bounds' data.

For each backbone (SmolLM2, the tiny Mistral and Mamba-2) and method (full, pruning, every exit
method under every state policy, with classifiers standardised on the backbone and thresholds
calibrated so that about half the decisions at the first deciding exit clear it: classifiers/untrained.py), the batched engine
decodes mixed prompts at batch 3 (no prefix cache) and batch 8 (prefix cache on), and the
reference decodes each prompt alone. A logits processor records the scores every token is picked
from and a wrapper rule the confidence of every exit decision; both runs are compared position by
position for as long as the row's tokens and exits agree. EOS and stop strings are off, so the
rows of a batch stay in step and the records line up.

    python benchmarks/near_tie_deviation.py --threads 2
    python benchmarks/near_tie_deviation.py --backbones smollm2 --dtype bfloat16 --threads 1 \
        --methods full ee-calm-copy ee-maxsoftmax-copy --out benchmarks/results/near_tie_deviation_bfloat16_cpu.json
    python benchmarks/near_tie_deviation.py --threads 1 --new-tokens 24 \
        --methods ee-{calm,ffn,mamba,maxsoftmax}-{copy,skip} ee-maxsoftmax-{copy,skip}-t0.999 \
        --out benchmarks/results/near_tie_deviation_probability.json

Writes benchmarks/results/near_tie_deviation.json: per backbone and method the largest
|score difference| (logits after the repetition penalty), absolute and over the row's largest
|score|, the largest relative confidence difference |a - b| / max(|a|, |b|), for a probability
(`ExitRule.probability`) the largest share of its band |a - b| / (7e-4 * nearer end + 1e-5 * larger) a
difference used (ee-maxsoftmax-*-t0.999 puts decisions next to 1, where that band narrows), the
positions compared, and the near ties and differing rows under the bounds of
dynamax_bench/engine/neartie.py.
Per backbone, `rows_tied_at_measured_deviation`: the share of reference rows with a token whose
relative top-2 margin lies below the largest relative score deviation measured (and below the
float32 bounds' 11.5 times it): the rows a bound set from these measurements would re-decode at
batch 1. `--dtype bfloat16` casts the backbone first (CPU bfloat16 kernels: what it measures is
how far bfloat16 rounding moves real weights' scores between batch shapes, not a GPU's bound).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import Tensor
from transformers import LogitsProcessor

from bench_backbones import backbone as load
from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.config import exit_positions
from dynamax_bench.engine import BatchedGenerator, EarlyExitGenerator, ExitPoint, ExitRule, Generation, Strategy
from dynamax_bench.classifiers.training_free import MaxSoftmaxRule
from dynamax_bench.classifiers.untrained import untrained_rule
from dynamax_bench.engine.correctness import first_difference, trace
from dynamax_bench.engine.neartie import CONFIDENCE_BOUND, LOGIT_MARGIN_BOUND, PROBABILITY_FLOOR, Bounds
from dynamax_bench.engine.prefix import plan_batches
from dynamax_bench.engine.rowstate import RowState
from dynamax_bench.engine.rules import decide
from dynamax_bench.files import write_json
from dynamax_bench.generation.tasks import get_task
from dynamax_bench.provenance import machine_description

FLOAT32 = Bounds.for_dtype(torch.float32)  # the bounds the batched engine decodes float32 under
POLICIES = {"transformer": ("copy", "partial"), "mamba2": ("skip", "partial")}
SHORT = ["The three primary colours are", "def fibonacci(n):", "Once", "Question: What is the capital of France?\nAnswer:"]


class ScoreRecorder(LogitsProcessor):
    """Keeps every scores tensor the engine picks tokens from (after the other processors)."""

    def __init__(self) -> None:
        self.calls: list[Tensor] = []

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        self.calls.append(scores.clone())
        return scores


class ConfidenceRecorder(ExitRule):
    """Decides as the wrapped rule does and keeps (exit layer, confidences) of every decision."""

    def __init__(self, rule: ExitRule) -> None:
        self.rule = rule
        self.threshold = rule.threshold
        self.stateful = rule.stateful
        self.probability = rule.probability
        self.calls: list[tuple[int, list[float]]] = []

    def prefill(self, point: ExitPoint, hidden: Tensor, state: RowState) -> None:
        self.rule.prefill(point, hidden, state)

    def confidence(self, point: ExitPoint, hidden: Tensor, state: RowState) -> Tensor:
        value = decide(self.rule, point, hidden, state)[0]
        self.calls.append((point.layer, value.tolist()))
        return value

    def advance(self, point: ExitPoint, hidden: Tensor, state: RowState) -> None:
        self.rule.advance(point, hidden, state)


def strategies(bb: Backbone, exits: list[int], prompts: list[str], new_tokens: int) -> dict[str, Strategy]:
    calibration = EarlyExitGenerator(bb.model, bb.tokenizer, exit_layers=exits, max_new_tokens=new_tokens,
                                     eos_token_ids=[])
    out = {"full": Strategy.full(), f"prune{bb.num_layers // 4}": Strategy.prune(bb.num_layers, bb.num_layers // 4)}
    for kind in ("calm", "ffn", "mamba", "maxsoftmax", "saturation"):
        rule = untrained_rule(kind, calibration, prompts[:4], exit_share=0.5)
        for policy in POLICIES[bb.family]:
            out[f"ee-{kind}-{policy}"] = Strategy.early_exit(rule, policy)
    for policy in POLICIES[bb.family]:  # the calibrated thresholds' regime: confidences next to 1
        out[f"ee-maxsoftmax-{policy}-t0.999"] = Strategy.early_exit(MaxSoftmaxRule(0.999), policy)
    return out


def with_recorders(strategy: Strategy) -> tuple[Strategy, ConfidenceRecorder | None]:
    if strategy.rule is None:
        return strategy, None
    recorder = ConfidenceRecorder(strategy.rule)
    return Strategy.early_exit(recorder, strategy.policy), recorder


def reference_records(bb: Backbone, exits: list[int], prompt: str, strategy: Strategy, new_tokens: int):
    engine = EarlyExitGenerator(bb.model, bb.tokenizer, exit_layers=exits, max_new_tokens=new_tokens, eos_token_ids=[])
    scores = ScoreRecorder()
    engine.processors.append(scores)
    recorded, confidences = with_recorders(strategy)
    out = engine.generate(prompt, recorded)
    per_step: list[list[float]] = [[] for _ in out.token_ids]
    if confidences is not None:  # one call per exit reached, steps 1..N-1 in order
        step, last = 1, 0
        for layer, values in confidences.calls:
            if layer <= last:
                step += 1
            per_step[step].append(values[0])
            last = layer
    return out, [s[0] for s in scores.calls], per_step


def batched_records(bb: Backbone, exits: list[int], prompts: list[str], strategy: Strategy, new_tokens: int,
                    batch_size: int, share: bool):
    engine = BatchedGenerator(bb.model, bb.tokenizer, exit_layers=exits, max_new_tokens=new_tokens, eos_token_ids=[],
                              batch_size=batch_size, share_prefixes=share)
    scores = ScoreRecorder()
    engine.processors.append(scores)
    recorded, confidences = with_recorders(strategy)
    outputs = engine.generate(prompts, recorded)
    plan = plan_batches([engine.tokenize(p) for p in prompts], batch_size, share)
    row_scores: dict[int, list[Tensor]] = {r: [] for r in range(len(prompts))}
    row_conf: dict[int, list[list[float]]] = {r: [[] for _ in range(new_tokens)] for r in range(len(prompts))}
    calls = iter(scores.calls)
    decisions = iter(confidences.calls) if confidences is not None else None
    for rows in plan.batches:
        for step in range(new_tokens):
            for row, s in zip(rows, next(calls)):
                row_scores[row].append(s)
            if decisions is None or step == 0:
                continue
            for point in sorted(exits):  # rows still running at this exit, in batch order
                running = [r for r in rows if outputs[r].exit_layers[step] >= point]
                if strategy.rule.stateful:  # one call over every row of the batch at every exit
                    layer, values = next(decisions)
                    assert layer == point and len(values) == len(rows)
                    values = [v for r, v in zip(rows, values) if r in running]
                elif not running:
                    continue
                else:
                    layer, values = next(decisions)
                assert layer == point and len(values) == len(running)
                for r, v in zip(running, values):
                    row_conf[r][step].append(v)
    return outputs, row_scores, row_conf


def compare(outputs: list[Generation], batched_scores, batched_conf, references, probability: bool) -> dict:
    logit, relative, confidence, tokens, decisions, differing = 0.0, 0.0, 0.0, 0, 0, 0
    band_share, near_one = 0.0, 0  # the largest share of a probability's band a deviation used; decisions > 0.99
    for row, (ours, (theirs, ref_scores, ref_conf)) in enumerate(zip(outputs, references)):
        start = first_difference(trace(ours), trace(theirs))
        differing += start is not None
        agree = len(ours.token_ids) if start is None else start + 1  # the first differing step still compares
        for step in range(agree):
            deviation = float((batched_scores[row][step] - ref_scores[step]).abs().max())
            logit = max(logit, deviation)
            relative = max(relative, deviation / float(ref_scores[step].abs().max()))
            tokens += 1
            for a, b in zip(batched_conf[row][step], ref_conf[step]):
                confidence = max(confidence, abs(a - b) / max(abs(a), abs(b), 1e-30))
                if probability:  # the engine's band, at a threshold of either value (it is symmetric)
                    band = float(FLOAT32.probability_band(torch.tensor([a], dtype=torch.float64), b)[0])
                    band_share = max(band_share, abs(a - b) / band)
                    near_one += max(a, b) > 0.99
                decisions += 1
    return {"max_abs_score_deviation": logit, "max_rel_score_deviation": relative,
            "max_rel_confidence_deviation": confidence,
            **({"max_share_of_probability_band": band_share, "decisions_above_0.99": near_one} if probability else {}),
            "tokens_compared": tokens, "decisions_compared": decisions, "rows_differing": differing,
            "near_ties": sum(len(g.near_ties) for g in outputs)}


def rows_tied(references: list[list], deviation: float) -> dict:
    """Share of the reference rows (every method's) with a token whose relative top-2 margin lies below
    `deviation` and below 11.5 times it (the float32 bounds' factor over the deviation they cover)."""
    counts = {"below_deviation": 0, "below_11.5x_deviation": 0}
    rows = 0
    for method in references:
        for _, scores, _ in method:
            rows += 1
            margins = []
            for s in scores:
                top2 = s.topk(2).values
                margins.append(float((top2[0] - top2[1]) / s.abs().max()))
            counts["below_deviation"] += min(margins) < deviation
            counts["below_11.5x_deviation"] += min(margins) < 11.5 * deviation
    return {key: value / rows for key, value in counts.items()} | {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["tiny_mistral", "tiny_mamba2", "smollm2"])
    parser.add_argument("--new-tokens", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--methods", nargs="+", help="only these methods (default: every one)")
    parser.add_argument("--out", default="benchmarks/results/near_tie_deviation.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    few_shot = [s.prompt for s in get_task("triviaqa").load({"kind": "embedded"}, limit=4, num_fewshot=5)]
    prompts = few_shot + SHORT
    result: dict = {"machine": f"{machine_description()}, torch threads {args.threads}", "dtype": args.dtype,
                    "prompts": len(prompts),
                    "new_tokens": args.new_tokens, "bounds": {"logit_margin_relative": LOGIT_MARGIN_BOUND,
                                                              "confidence_relative": CONFIDENCE_BOUND,
                                                              "probability_floor": PROBABILITY_FLOOR},
                    "backbones": {}}
    for name in args.backbones:
        bb = load(name)
        bb.model.to(getattr(torch, args.dtype))
        exits = exit_positions({}, bb.num_layers)
        cells, every_reference = {}, []
        with torch.inference_mode():
            for method, strategy in strategies(bb, exits, prompts, args.new_tokens).items():
                if args.methods and method not in args.methods:
                    continue
                references = [reference_records(bb, exits, p, strategy, args.new_tokens) for p in prompts]
                every_reference.append(references)
                for batch_size, share in ((3, False), (8, True)):
                    outputs, scores, conf = batched_records(bb, exits, prompts, strategy, args.new_tokens,
                                                            batch_size, share)
                    key = f"{method} B={batch_size} prefix={'on' if share else 'off'}"
                    cells[key] = compare(outputs, scores, conf, references,
                                         strategy.rule is not None and strategy.rule.probability)
                    print(name, key, json.dumps(cells[key]), flush=True)
        result["backbones"][name] = {
            "cells": cells,
            "max_abs_score_deviation": max(c["max_abs_score_deviation"] for c in cells.values()),
            "max_rel_score_deviation": max(c["max_rel_score_deviation"] for c in cells.values()),
            "max_rel_confidence_deviation": max(c["max_rel_confidence_deviation"] for c in cells.values()),
            "max_share_of_probability_band": max((c["max_share_of_probability_band"] for c in cells.values()
                                                  if "max_share_of_probability_band" in c), default=None),
        }
        result["backbones"][name]["rows_tied_at_measured_deviation"] = rows_tied(
            every_reference, result["backbones"][name]["max_rel_score_deviation"])
    write_json(Path(args.out), result)
    print(json.dumps({n: {k: v for k, v in b.items() if k != "cells"} for n, b in result["backbones"].items()},
                     indent=2))


if __name__ == "__main__":
    main()
