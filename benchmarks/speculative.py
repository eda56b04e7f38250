"""Self-speculative decoding on the default profile's backbones: equality with full, acceptance, speedup.

For each backbone (SmolLM2; the distilled Mamba-2 where resources/backbones/mamba2 exists) and task
(every embedded sample, the default profile's prompts, lengths and stop strings; batch 1; one torch
thread):

1. The full model's plain decode on the engine's reference path, reading the greedy token at every
   candidate draft layer at every decode step (the oracle strategy's probes, all of them kept): the
   per-position agreement of each layer with the last. A draft is accepted exactly when its layer
   agrees there (the lower layers' states are plain decoding's), so the rounds of any spec-eE-kK follow
   from that vector (`simulate`): acceptance for a grid of (E, K) without running each.
2. For each configuration of --run: the speculative engine on every sample, timed against the full
   model's plain decode in pairs (which of the two runs first alternates per sample; decode seconds
   are each run's time after its first token). Its tokens against full's (rows and tokens differing,
   rows with a near tie), its rounds against the simulated ones, and the largest deviation of a
   verification logit from the plain decode's at the same position, over the row's largest |logit|
   (the near-tie bound, 2e-4, must sit above it).
3. The blocks' seconds (costs/latency.block_seconds, interleaved repeats) and FLOPs (costs/flops): the
   speedup the i.i.d. acceptance model predicts from each configuration's per-draft acceptance, against
   the measured one, and the grid of 1.

    PYTHONPATH=. python benchmarks/speculative.py --run smollm2:24:2 --run mamba2:8:3

Writes benchmarks/results/speculative.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dynamax_bench.backbones.prepare import Backbone, load_backbone
from dynamax_bench.config import REPO_ROOT
from dynamax_bench.costs.flops import flops_table
from dynamax_bench.costs.latency import block_seconds
from dynamax_bench.costs.speculation import BlockCosts, break_even, expected_tokens, per_draft_acceptance
from dynamax_bench.engine import EarlyExitGenerator, Generation, Strategy, layer_stack
from dynamax_bench.engine.speculative import SpeculativeGenerator, Speculation
from dynamax_bench.files import read_json, write_json
from dynamax_bench.generation.tasks import load_samples
from dynamax_bench.profile_checks import load_profile
from dynamax_bench.provenance import machine_description
from dynamax_bench.spec import max_new_tokens, task_spec

CANDIDATES = {"smollm2": [6, 10, 15, 20, 24, 27, 29], "mamba2": [2, 4, 6, 8, 10, 13, 15]}
GRID_K = range(1, 9)


class Probe(EarlyExitGenerator):
    """The oracle strategy's decode (every layer, the full model's tokens), keeping at every decode step
    whether each probed layer's greedy token is the full model's."""

    agree: list[list[bool]]

    def _oracle_exit(self, token: int, input_ids: torch.Tensor, exit_hiddens: list[torch.Tensor]) -> int:
        self.agree.append([self._pick(hidden, input_ids) == token for hidden in exit_hiddens])
        return self.stack.num_layers


def simulate(agree: list[bool], tokens: list[int], draft: int, limit: int, eos: set[int]) -> list[tuple[int, int]]:
    """The rounds (drafted, accepted) spec-e?-k<draft> takes on a sample whose decode tokens 1..n-1 the
    draft layer gets right where `agree` (index k - 1 for token k) holds. A round with p tokens so far
    drafts min(K, limit - p - 1) tokens (stopping after a drafted end-of-sequence token) and keeps the
    leading agreeing drafts and one more token; drafts past the sample's end are never verified."""
    rounds, p, n = [], 1, len(tokens)
    while p < n:
        budget = min(draft, limit - p - 1)
        accepted = 0
        while accepted < budget and p + accepted < n and agree[p + accepted - 1]:
            accepted += 1
        drafted = budget
        ends = [i + 1 for i in range(accepted) if tokens[p + i] in eos]
        if ends:  # an agreeing draft was the end of sequence: the draft stopped there
            drafted = accepted = ends[0]
        rounds.append((drafted, accepted))
        p += accepted + 1
    return rounds


class LogitRecorder:
    """Keeps the scores a plain decode picks each token from, and the verification logits of a
    speculation (the engine's head over several positions), to compare them position by position."""

    def __init__(self, plain: EarlyExitGenerator, spec: SpeculativeGenerator) -> None:
        self.plain_scores: list[torch.Tensor] = []
        self.verify_logits: list[torch.Tensor] = []
        own_scores, own_head_all = plain._scores, spec.stack.head_all

        def scores(hidden, input_ids):
            out = own_scores(hidden, input_ids)
            self.plain_scores.append(out)
            return out

        def head_all(hidden):
            out = own_head_all(hidden)
            self.verify_logits.append(out)
            return out

        plain._scores, spec.stack.head_all = scores, head_all

    def deviation(self, accepted: list[int]) -> float:
        """Largest |verification logit - plain logit| over the plain row's largest |logit|, at the positions
        each round kept (repetition penalty off, so the scores are the logits)."""
        largest, token = 0.0, 1
        for logits, agreed in zip(self.verify_logits, accepted):
            for j in range(min(agreed + 1, len(self.plain_scores) - token)):
                ref = self.plain_scores[token][0]
                largest = max(largest, float((logits[0, j] - ref).abs().max() / ref.abs().max()))
                token += 1
        self.plain_scores.clear()
        self.verify_logits.clear()
        return largest


def timed(run, prompt: list[int]) -> tuple[Generation, float]:
    """A generation and its decode seconds (after the first token's mark, as the latency rule splits)."""
    marks: list[float] = []
    start = time.perf_counter()
    out = run(prompt, lambda: marks.append(time.perf_counter()))
    return out, time.perf_counter() - marks[0]


def run_task(backbone: Backbone, config: dict, task_name: str, runs: list[Speculation], limit: int | None) -> dict:
    spec = task_spec(config, task_name)
    task, samples = load_samples(spec)
    samples = samples[:limit] if limit else samples
    length = max_new_tokens(config, task_name)
    prompts = [backbone.tokenizer(s.prompt).input_ids for s in samples]
    candidates = [e for e in CANDIDATES[backbone.meta["name"]] if e < backbone.num_layers]
    probe = Probe(backbone.model, backbone.tokenizer, exit_layers=candidates, max_new_tokens=length,
                  stop_strings=task.stop_strings)
    eos = probe.eos_token_ids
    references, agreement = [], []
    for prompt in prompts:
        probe.agree = []
        references.append(probe.generate(prompt, Strategy(oracle=True)))
        agreement.append(probe.agree)
    out = {"samples": len(samples), "max_new_tokens": length, "decode_tokens": sum(len(r.token_ids) - 1 for r in references)}
    grid = {}
    for i, layer in enumerate(candidates):
        per_layer = [[step[i] for step in steps] for steps in agreement]
        agreeing = sum(map(sum, per_layer))
        grid[str(layer)] = {"agreement": agreeing / max(1, out["decode_tokens"]), "K": {}}
        for k in GRID_K:
            rounds = [pair for agree, ref in zip(per_layer, references)
                      for pair in simulate(agree, ref.token_ids, k, length, eos)]
            grid[str(layer)]["K"][str(k)] = {
                "passes": len(rounds), "drafted": sum(d for d, _ in rounds), "accepted": sum(a for _, a in rounds),
                "per_draft_acceptance": per_draft_acceptance(rounds),
                "tokens_per_pass": out["decode_tokens"] / len(rounds) if rounds else None}
    out["grid"] = grid
    out["runs"] = {}
    for speculation in runs:
        out["runs"][f"spec-e{speculation.draft_layer}-k{speculation.draft_tokens}"] = run_speculation(
            backbone, task, prompts, references, agreement, candidates, speculation, length, eos)
    return out


def run_speculation(backbone: Backbone, task, prompts: list[list[int]], references: list[Generation],
                    agreement: list[list[list[bool]]], candidates: list[int], speculation: Speculation, length: int,
                    eos: set[int]) -> dict:
    plain = EarlyExitGenerator(backbone.model, backbone.tokenizer, exit_layers=[speculation.draft_layer],
                               max_new_tokens=length, stop_strings=task.stop_strings)
    spec = SpeculativeGenerator(backbone.model, backbone.tokenizer, speculation=speculation, max_new_tokens=length,
                                stop_strings=task.stop_strings)
    recorder = LogitRecorder(plain, spec)
    full_run = lambda prompt, mark: plain.generate(prompt, Strategy.full(), on_first_token=mark)  # noqa: E731
    spec_run = lambda prompt, mark: spec.speculate(prompt, on_first_token=mark)  # noqa: E731
    for prompt in prompts[:2]:  # warm-up
        full_run(prompt, lambda: None)
        spec_run(prompt, lambda: None)
    recorder.deviation([])
    rows_differing = tokens_differing = rows_with_ties = simulated_equal = 0
    full_seconds, spec_seconds, ratios, rounds, deviation = [], [], [], [], 0.0
    index = candidates.index(speculation.draft_layer) if speculation.draft_layer in candidates else None
    for i, (prompt, reference) in enumerate(zip(prompts, references)):
        pair = [("full", full_run), ("spec", spec_run)]
        results = dict((name, timed(fn, prompt)) for name, fn in (pair if i % 2 == 0 else pair[::-1]))
        (full, full_s), (mine, spec_s) = results["full"], results["spec"]
        assert full.token_ids == reference.token_ids, "the plain decode differs from the oracle's tokens"
        if mine.token_ids != full.token_ids:
            rows_differing += 1
            tokens_differing += sum(a != b for a, b in zip(mine.token_ids, full.token_ids)) + abs(
                len(mine.token_ids) - len(full.token_ids))
        rows_with_ties += bool(mine.near_ties)
        deviation = max(deviation, recorder.deviation(mine.accepted))
        mine_rounds = list(zip(mine.drafted, mine.accepted))
        rounds.extend(mine_rounds)
        if index is not None:
            agree = [step[index] for step in agreement[i]]
            simulated_equal += simulate(agree, reference.token_ids, speculation.draft_tokens, length, eos) == mine_rounds
        if len(full.token_ids) > 1:
            full_seconds.append(full_s)
            spec_seconds.append(spec_s)
            ratios.append(full_s / spec_s)
    decode_tokens = sum(len(r.token_ids) - 1 for r in references)
    return {
        "rows": len(prompts), "rows_differing": rows_differing, "tokens_differing": tokens_differing,
        "rows_with_near_ties": rows_with_ties, "max_verify_logit_deviation": deviation,
        "rounds_equal_to_simulation": simulated_equal if index is not None else None,
        "passes": len(rounds), "drafted": sum(d for d, _ in rounds), "accepted": sum(a for _, a in rounds),
        "acceptance_rate": sum(a for _, a in rounds) / max(1, sum(d for d, _ in rounds)),
        "per_draft_acceptance": per_draft_acceptance(rounds), "tokens_per_pass": decode_tokens / max(1, len(rounds)),
        "timed_pairs": len(ratios), "full_decode_seconds": sum(full_seconds), "spec_decode_seconds": sum(spec_seconds),
        "measured_speedup": sum(full_seconds) / sum(spec_seconds) if spec_seconds else None,
        "median_pair_ratio": statistics.median(ratios) if ratios else None,
    }


def predictions(result: dict, costs: list[BlockCosts]) -> None:
    """Add the i.i.d. model's speedups to every run and grid entry of a backbone's result."""
    for task in result["tasks"].values():
        for name, entry in task["runs"].items():
            layer, k = (int(part[1:]) for part in name[len("spec-"):].split("-"))
            alpha = entry["per_draft_acceptance"]
            if alpha is None:  # nothing drafted: every sample stopped at its first token
                continue
            entry["iid_tokens_per_pass"] = expected_tokens(alpha, k)
            for cost in costs:  # from the i.i.d. model's tokens per pass, and from the observed ones
                entry[f"predicted_speedup_{cost.unit}"] = cost.speedup(alpha, layer, k)
                entry[f"predicted_speedup_{cost.unit}_observed_tokens"] = cost.speedup_at(entry["tokens_per_pass"], layer, k)
        for layer, entry in task["grid"].items():
            for k, cell in entry["K"].items():
                alpha = cell["per_draft_acceptance"]
                for cost in costs:
                    cell[f"predicted_speedup_{cost.unit}"] = None if alpha is None else cost.speedup(alpha, int(layer), int(k))


def bandwidth_costs(model: torch.nn.Module) -> BlockCosts:
    """A memory-bound decode's costs in weights read, from a model's parameter counts: a layer's pass over m
    positions reads its weights once (a Mamba-2 layer's m recurrent steps, m times); the head likewise once."""
    stack = layer_stack(model)
    layer = sum(p.numel() for p in stack.layers[0].parameters())
    head = model.lm_head.weight.numel()
    recurrent = stack.family == "mamba2"
    positions = range(1, GRID_K[-1] + 2)
    return BlockCosts(unit="weights read", num_layers=stack.num_layers, step=float(layer), lower=float(layer),
                      over={m: float(layer * (m if recurrent else 1)) for m in positions}, head=float(head),
                      head_over=dict.fromkeys(positions, float(head)))


def paper_shapes(backbones: dict[str, torch.nn.Module]) -> dict:
    """Per shape, the agreement each spec-e<E>-k<K> needs to break even in a memory-bound decode (batch 1 on
    a GPU): the default profile's backbones and the paper's, the latter built on the meta device (no weights)."""
    from transformers import Mamba2Config, Mamba2ForCausalLM, MistralConfig, MistralForCausalLM

    with torch.device("meta"):
        models = {**backbones, "mistral-7b (paper)": MistralForCausalLM(MistralConfig()),
                  "mamba-codestral-7b (paper)": Mamba2ForCausalLM(Mamba2Config())}
    out = {}
    for name, model in models.items():
        costs = bandwidth_costs(model)
        layers = costs.num_layers
        out[name] = {"costs": costs.to_dict(), "break_even_agreement": {
            str(layer): {str(k): break_even(costs, layer, k) for k in GRID_K}
            for layer in sorted({layers // 8, layers // 4, 3 * layers // 8, layers // 2, 3 * layers // 4})}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="append", default=[], help="backbone:E:K to run and time (repeatable)")
    parser.add_argument("--backbones", nargs="+", default=["smollm2", "mamba2"])
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument("--limit", type=int, default=None, help="samples per task (default: every one)")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "speculative.json"))
    parser.add_argument("--predict-only", action="store_true",
                        help="recompute the predictions of --out from its measured acceptance and block costs")
    args = parser.parse_args()
    if args.predict_only:
        report = read_json(args.out)
        for result in report["backbones"].values():
            if "block_seconds" in result:
                predictions(result, [BlockCosts.from_dict(result[key]) for key in ("block_seconds", "block_flops")])
        report["bandwidth_model"] = paper_shapes({name: load_backbone(REPO_ROOT / "resources" / "backbones" / name).model
                                                  for name in report["backbones"] if "block_seconds" in report["backbones"][name]})
        write_json(args.out, report)
        return
    torch.set_num_threads(1)
    config = load_profile(REPO_ROOT / "config" / "default.yaml")
    out = Path(args.out)
    report = read_json(out) if out.exists() else {"backbones": {}}  # one backbone per run: the others stay
    report.update({"machine": machine_description(), "torch_threads": 1, "profile": "default",
                   "note": "CPU timings on a machine shared with other jobs: decode seconds of full and spec in "
                           "pairs (order alternating per sample); block seconds are medians of interleaved repeats"})
    for name in args.backbones:
        folder = REPO_ROOT / "resources" / "backbones" / name
        if not folder.exists():
            report["backbones"][name] = {"skipped": f"{folder} missing (snakemake {folder.relative_to(REPO_ROOT)})"}
            continue
        backbone = load_backbone(folder)
        runs = [Speculation(int(e), int(k)) for b, e, k in (r.split(":") for r in args.run) if b == name]
        result = {"num_layers": backbone.num_layers, "tasks": {}}
        for task_name in args.tasks or list(config["tasks"]):
            started = time.perf_counter()
            result["tasks"][task_name] = run_task(backbone, config, task_name, runs, args.limit)
            result["tasks"][task_name]["seconds"] = time.perf_counter() - started
            print(name, task_name, {k: v for k, v in result["tasks"][task_name].items() if k != "grid"}, flush=True)
        stack = layer_stack(backbone.model)
        seconds = block_seconds(stack, context=256, repeats=15)
        with tempfile.TemporaryDirectory() as tmp:
            table = flops_table(folder, Path(tmp) / "flops.json", context_length=256, kinds=[], options={},
                                exits=config["backbones"][name]["exits"])
        flops = BlockCosts.from_flops(table)
        result["block_seconds"], result["block_flops"] = seconds.to_dict(), flops.to_dict()
        predictions(result, [seconds, flops])
        report["backbones"][name] = result
        write_json(out, report)
    loaded = {name: load_backbone(REPO_ROOT / "resources" / "backbones" / name).model for name in args.backbones
              if (REPO_ROOT / "resources" / "backbones" / name).exists()}
    report["bandwidth_model"] = paper_shapes(loaded)
    write_json(out, report)


if __name__ == "__main__":
    main()
