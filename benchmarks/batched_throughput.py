"""Throughput of the batched early-exit engine on SmolLM2: what batching, the shared-prefix cache
and row compaction give, against `model.generate`.

Decode-heavy workload: short prompts (TriviaQA questions without few-shot examples), 32 new
tokens, EOS and stop strings off (every row makes exactly 32 tokens, `min_new_tokens` for
`model.generate`). Rows: the engine's `full` path at batch 1, 4, 16 and 32 (batch 1 on fewer
prompts: the rate is per token), the batch-1 reference path, `model.generate` greedy at the same
batch sizes (left padding), and at batch 16 one early-exit method per classifier kind (calm, ffn,
mamba: untrained, standardised on SmolLM2's own exit states, threshold calibrated so that about
half of the decisions exit) and per training-free rule (maxsoftmax, saturation, calibrated the
same way), state policy `copy`; plus the rejected alternative to masking exited rows, compaction
(only the running rows run a layer, through a cache view), on the same early-exit methods.

Task workload: the default profile's TriviaQA (5-shot), TruthfulQA (QA primer) and CoQA (story
turns) prompts with their stop strings and lengths; `full` and `ee-calm-copy` at batch 1 and at
batch 16 with the shared-prefix cache off and on.

Every number is generated tokens per second, the median over `--repeats` runs after one warm-up
(prompt tokenisation outside the timing), for each torch thread count asked.

    python benchmarks/batched_throughput.py --threads 1 2 --repeats 3
    python benchmarks/batched_throughput.py --threads 1 --repeats 1 --parts task_prompts \
        --out benchmarks/results/batched_throughput_tasks.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench_backbones import backbone as load
from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.config import REPO_ROOT, exit_positions
from dynamax_bench.engine import BatchedGenerator, EarlyExitGenerator, Generation, Strategy
from dynamax_bench.engine.batched import on_rows
from dynamax_bench.classifiers.untrained import untrained_rule
from dynamax_bench.engine.correctness import trace
from dynamax_bench.engine.rules import decide
from dynamax_bench.files import write_json
from dynamax_bench.generation.tasks import get_task, load_samples
from dynamax_bench.profile_checks import load_profile
from dynamax_bench.provenance import machine_description
from dynamax_bench.spec import max_new_tokens, task_spec

NEW_TOKENS = 32


class RowsCache:
    """Compaction's cache view of one layer for the running rows: their new K/V join the exited
    rows' policy fill, the parent cache appends one position for every row, the running rows get
    their own K/V back (a gather of the whole cache, the price of compaction)."""

    def __init__(self, parent, rows: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.parent, self.rows, self.keys, self.values = parent, rows, keys, values

    def update(self, keys, values, layer_idx, *args, **kwargs):
        k, v = self.parent.update(self.keys.index_copy(0, self.rows, keys),
                                  self.values.index_copy(0, self.rows, values), layer_idx)
        return k.index_select(0, self.rows), v.index_select(0, self.rows)


class CompactingGenerator(BatchedGenerator):
    """The alternative measured against masking (transformers only): a layer runs on the rows
    still running; exited rows get the policy's K/V without running it."""

    def _step(self, batch, tokens, strategy):
        stack, rule, policy = self.stack, strategy.rule, strategy.policy
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones(len(batch.rows), 1)], dim=1)
        hidden = stack.embed(tokens[:, None])
        inputs = stack.step_inputs(hidden, batch.cache, batch.mask, batch.positions[:, None])
        batch.positions = batch.positions + 1
        size = hidden.shape[0]
        exited = torch.zeros(size, dtype=torch.bool)
        executed = torch.full((size,), stack.num_layers, dtype=torch.long)
        left = 0
        for index in range(stack.num_layers):
            if left == 0:
                hidden = stack.layer(index, hidden, batch.cache, inputs)
            elif left == size:
                stack.fill_layer(policy, index, hidden, batch.cache, inputs)
            else:
                rows = (~exited).nonzero().squeeze(1)
                cos, sin = inputs["position_embeddings"]
                if policy == "copy":
                    keys, values = stack.last_kv(batch.cache, index - 1)
                else:
                    keys, values = stack.partial_kv(index, hidden, cos, sin)
                mask = inputs["attention_mask"]
                sub = {"attention_mask": None if mask is None else mask[rows],
                       "position_ids": inputs["position_ids"][rows], "position_embeddings": (cos[rows], sin[rows])}
                out = stack.layer(index, hidden[rows], RowsCache(batch.cache, rows, keys, values), sub)
                hidden = hidden.index_copy(0, rows, out)
            point = self.points.get(index + 1)
            if point is None or rule is None:
                continue
            if rule.stateful and left:
                gone = exited.nonzero().squeeze(1)
                on_rows(gone, hidden, batch.state, lambda h, s, p=point: rule.advance(p, h, s))
            if left == size:
                continue
            running = (~exited).nonzero().squeeze(1)
            confidence, leave, _ = on_rows(running, hidden, batch.state, lambda h, s, p=point: decide(rule, p, h, s))
            leaving = running[leave]
            exited[leaving] = True
            executed[leaving] = point.layer
            left += int(leaving.numel())
        return hidden, executed, []


def tokens(outputs: list) -> list[list[int]]:
    return [o.token_ids if isinstance(o, Generation) else o for o in outputs]


def timed(fn: Callable[[], list], repeats: int) -> dict:
    """Tokens per wall-clock second and per CPU second of this process (median, min, max over
    repeats, after one warm-up), and the last outputs. On a shared machine the wall clock counts
    other jobs' time; CPU time does not (at one thread it is the uncontended wall time's proxy)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        outputs = fn()
        count = sum(map(len, tokens(outputs)))
        wall.append(count / (time.perf_counter() - start))
        cpu.append(count / (time.process_time() - start_cpu))
    return {"wall": wall, "cpu": cpu, "outputs": outputs}


def engine_run(bb: Backbone, exits: list[int], prompts: list[list[int]], strategy: Strategy, batch_size: int,
               share: bool, new_tokens: int, stops: tuple[str, ...] = (), eos: bool = False,
               cls: type[BatchedGenerator] = BatchedGenerator) -> Callable[[], list[Generation]]:
    engine = cls(bb.model, bb.tokenizer, exit_layers=exits, max_new_tokens=new_tokens, stop_strings=stops,
                 eos_token_ids=None if eos else [], batch_size=batch_size, share_prefixes=share)
    return lambda: engine.generate(prompts, strategy)


def reference_run(bb: Backbone, exits: list[int], prompts: list[list[int]], strategy: Strategy,
                  new_tokens: int) -> Callable[[], list[Generation]]:
    engine = EarlyExitGenerator(bb.model, bb.tokenizer, exit_layers=exits, max_new_tokens=new_tokens,
                                eos_token_ids=[])
    return lambda: [engine.generate(p, strategy) for p in prompts]


def generate_run(bb: Backbone, prompts: list[list[int]], batch_size: int,
                 new_tokens: int) -> Callable[[], list[list[int]]]:
    """model.generate, greedy, left-padded batches; exactly `new_tokens` per row."""
    pad = bb.tokenizer.pad_token_id if bb.tokenizer.pad_token_id is not None else bb.tokenizer.eos_token_id
    batches = []
    for start in range(0, len(prompts), batch_size):
        rows = prompts[start:start + batch_size]
        width = max(map(len, rows))
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        batches.append((ids, mask))

    def run() -> list[list[int]]:
        out = []
        with torch.inference_mode():
            for ids, mask in batches:
                tokens = bb.model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens,
                                           min_new_tokens=new_tokens, do_sample=False, pad_token_id=pad)
                out += tokens[:, ids.shape[1]:].tolist()
        return out
    return run


def ee_strategies(bb: Backbone, exits: list[int], prompts: list[str]) -> dict[str, Strategy]:
    calibration = EarlyExitGenerator(bb.model, bb.tokenizer, exit_layers=exits, max_new_tokens=16, eos_token_ids=[])
    return {f"ee-{kind}-copy": Strategy.early_exit(untrained_rule(kind, calibration, prompts, exit_share=0.5), "copy")
            for kind in ("calm", "ffn", "mamba", "maxsoftmax", "saturation")}


def record(results: dict, key: str, measured: dict, extra: dict | None = None) -> None:
    wall, cpu, outputs = measured["wall"], measured["cpu"], measured["outputs"]
    results[key] = {"tokens_per_s": statistics.median(wall), "min": min(wall), "max": max(wall),
                    "tokens_per_cpu_s": statistics.median(cpu), "tokens": sum(map(len, tokens(outputs))),
                    **(extra or {})}
    if outputs and isinstance(outputs[0], Generation):  # decode steps' mean exit layer
        decode = [layer for g in outputs for layer in g.exit_layers[1:]]
        results[key]["mean_decode_exit_layer"] = statistics.mean(decode) if decode else None
    print(f"  {key}: {results[key]['tokens_per_s']:.2f} tokens/s, {results[key]['tokens_per_cpu_s']:.2f} per CPU s",
          flush=True)


def decode_heavy(bb: Backbone, exits: list[int], repeats: int, strategies: dict[str, Strategy]) -> dict:
    questions = [s.prompt for s in get_task("triviaqa").load({"kind": "embedded"}, limit=32, num_fewshot=0)]
    prompts = [bb.tokenizer(q).input_ids for q in questions]
    few = prompts[:8]
    results: dict = {"prompts": len(prompts), "prompts_at_batch_1": len(few), "new_tokens": NEW_TOKENS}
    full = Strategy.full()
    record(results, "reference full batch 1", timed(reference_run(bb, exits, few, full, NEW_TOKENS), repeats))
    outputs = {}
    for b in (1, 4, 16, 32):
        rows = few if b == 1 else prompts
        measured = timed(engine_run(bb, exits, rows, full, b, True, NEW_TOKENS), repeats)
        record(results, f"engine full batch {b}", measured)
        generated = timed(generate_run(bb, rows, b, NEW_TOKENS), repeats)
        record(results, f"generate batch {b}", generated,
               {"rows_equal_to_engine": sum(a == g for a, g in zip(tokens(measured["outputs"]), generated["outputs"]))})
        outputs[b] = tokens(measured["outputs"])
    results["engine_rows_equal_to_batch_1"] = {  # the first 8 prompts
        str(b): sum(a == r for a, r in zip(outputs[b], outputs[1])) for b in (4, 16, 32)}
    for name, strategy in strategies.items():
        masked = timed(engine_run(bb, exits, prompts, strategy, 16, True, NEW_TOKENS), repeats)
        record(results, f"{name} batch 16", masked)
        compacted = timed(engine_run(bb, exits, prompts, strategy, 16, True, NEW_TOKENS, cls=CompactingGenerator),
                          repeats)
        same = sum(trace(a) == trace(c) for a, c in zip(masked["outputs"], compacted["outputs"]))
        record(results, f"{name} batch 16 compaction", compacted, {"rows_equal_to_masking": same})
    results["targets"] = {
        f"{name}_{clock}": results["engine full batch 16"][clock] / results[other][clock]
        for name, other in (("batch_16_over_batch_1", "engine full batch 1"),
                            ("batch_16_over_generate_16", "generate batch 16"))
        for clock in ("tokens_per_s", "tokens_per_cpu_s")
    }
    return results


def task_prompts(bb: Backbone, repeats: int, exits: list[int], calm: Strategy) -> dict:
    config = load_profile(REPO_ROOT / "config" / "default.yaml")
    results: dict = {}
    for name in ("triviaqa", "truthfulqa", "coqa"):
        task, samples = load_samples(task_spec(config, name))
        prompts = [bb.tokenizer(s.prompt).input_ids for s in samples]
        new_tokens = max_new_tokens(config, name)
        cell: dict = {"prompts": len(prompts), "max_new_tokens": new_tokens, "stop_strings": list(task.stop_strings),
                      "mean_prompt_tokens": statistics.mean(map(len, prompts))}
        print(f" {name}: {len(prompts)} prompts, {cell['mean_prompt_tokens']:.0f} prompt tokens on average", flush=True)
        for method, strategy in (("full", Strategy.full()), ("ee-calm-copy", calm)):
            for b, share in ((1, False), (16, False), (16, True)):
                run = engine_run(bb, exits, prompts, strategy, b, share, new_tokens, task.stop_strings, eos=True)
                record(cell, f"{method} batch {b} prefix {'on' if share else 'off'}", timed(run, repeats))
        results[name] = cell
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", nargs="+", choices=("decode_heavy", "task_prompts"),
                        default=["decode_heavy", "task_prompts"], help="which workloads to measure")
    parser.add_argument("--out", default="benchmarks/results/batched_throughput.json")
    args = parser.parse_args()
    bb = load("smollm2")
    exits = exit_positions({}, bb.num_layers)
    calibration_prompts = [s.prompt for s in get_task("triviaqa").load({"kind": "embedded"}, limit=4, num_fewshot=0)]
    strategies = ee_strategies(bb, exits, calibration_prompts)
    result: dict = {"backbone": bb.meta["name"], "machine": machine_description(), "cpu_count": os.cpu_count(),
                    "exit_layers": exits, "repeats": args.repeats, "statistic": "median over repeats of generated tokens per wall-clock second and per CPU second of the process",
                    "runs": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"torch threads {threads}", flush=True)
        with open("/proc/loadavg") as load_file:
            loadavg = load_file.read().split()[:3]
        run = result["runs"][f"threads {threads}"] = {"load_average_at_start": loadavg}
        if "decode_heavy" in args.parts:
            run["decode_heavy"] = decode_heavy(bb, exits, args.repeats, strategies)
            write_json(Path(args.out), result)  # a run cut off later keeps what it finished
        if "task_prompts" in args.parts:
            run["task_prompts"] = task_prompts(bb, args.repeats, exits, strategies["ee-calm-copy"])
            write_json(Path(args.out), result)
    print(json.dumps(result, indent=1)[:4000])


if __name__ == "__main__":
    main()
