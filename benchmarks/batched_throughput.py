"""Throughput of the batched early-exit engine on SmolLM2: what early exit, batching and the
shared-prefix cache give, against `model.generate` and against the engine's code before a change.

Decode-heavy workload: short prompts (TriviaQA questions without few-shot examples), 32 new
tokens, EOS and stop strings off (every row makes exactly 32 tokens, `min_new_tokens` for
`model.generate`). Early-exit methods: one per classifier kind (calm, ffn, mamba: untrained,
standardised on SmolLM2's own exit states, threshold calibrated so that about half of the
decisions exit) and per training-free rule (maxsoftmax, saturation, calibrated the same way),
state policy `copy`.

Parts:
- `ee_methods`: every early-exit method against `full` at batch 16 and 32 in one run, for two
  versions of the engine (`--before`: a checkout of the code before, e.g. a `git worktree` of
  main; the current checkout is `after`), each in its own process, the versions alternating
  (before, after, after, before, ...) for `--pairs` pairs. Per version, method and batch size:
  tokens per wall-clock and per CPU second (median over the runs, each after one warm-up), the
  mean exit layer of the decode steps, the speedup over `full` and the speedup the FLOPs predict
  (the cost ledger of dynamax_bench/costs over the same exit traces, classifier work included),
  their ratio, the ceiling of skipping work only where every row of a step has left (L over the
  mean, over decode steps, of the deepest row's exit layer), and the host reads per decode step
  (dynamax_bench/engine/hostreads.py, counted in a separate run). The generations of the two
  versions are compared row by row (tokens and exit layers); a row that differs must differ at a
  near tie recorded by the version after.
- `decode_heavy`: the engine's `full` path at batch 1, 4, 16 and 32 (batch 1 on fewer prompts:
  the rate is per token), the batch-1 reference path, `model.generate` greedy at the same batch
  sizes (left padding), and at batch 16 each early-exit method.
- `task_prompts`: the default profile's TriviaQA (5-shot), TruthfulQA (QA primer) and CoQA
  (story turns) prompts with their stop strings and lengths; `full` and `ee-calm-copy` at batch 1
  and at batch 16 with the shared-prefix cache off and on.

Every number is generated tokens per second, the median over `--repeats` runs after one warm-up
(prompt tokenisation outside the timing), for each torch thread count asked.

    git worktree add --detach /tmp/enginebase main
    python benchmarks/batched_throughput.py --parts ee_methods --before /tmp/enginebase --pairs 3 \
        --out benchmarks/results/batched_throughput_ee.json
    python benchmarks/batched_throughput.py --threads 1 2 --repeats 3 --parts decode_heavy task_prompts
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench_backbones import backbone as load
from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.config import REPO_ROOT, exit_positions
from dynamax_bench.engine import BatchedGenerator, EarlyExitGenerator, Generation, Strategy
from dynamax_bench.classifiers.untrained import untrained_rule
from dynamax_bench.files import write_json
from dynamax_bench.generation.tasks import get_task, load_samples
from dynamax_bench.profile_checks import load_profile
from dynamax_bench.provenance import machine_description
from dynamax_bench.spec import max_new_tokens, task_spec

NEW_TOKENS = 32
HERE = Path(__file__).resolve()
EE_KINDS = ("calm", "ffn", "mamba", "maxsoftmax", "saturation")


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
               share: bool, new_tokens: int, stops: tuple[str, ...] = (), eos: bool = False) -> Callable[[], list[Generation]]:
    engine = BatchedGenerator(bb.model, bb.tokenizer, exit_layers=exits, max_new_tokens=new_tokens, stop_strings=stops,
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
            for kind in EE_KINDS}


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
    prompts = decode_heavy_prompts(bb)
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
        record(results, f"{name} batch 16", timed(engine_run(bb, exits, prompts, strategy, 16, True, NEW_TOKENS),
                                                  repeats))
    results["targets"] = {
        f"{name}_{clock}": results["engine full batch 16"][clock] / results[other][clock]
        for name, other in (("batch_16_over_batch_1", "engine full batch 1"),
                            ("batch_16_over_generate_16", "generate batch 16"))
        for clock in ("tokens_per_s", "tokens_per_cpu_s")
    }
    return results


def decode_heavy_prompts(bb: Backbone) -> list[list[int]]:
    questions = [s.prompt for s in get_task("triviaqa").load({"kind": "embedded"}, limit=32, num_fewshot=0)]
    return [bb.tokenizer(q).input_ids for q in questions]


def host_reads_mode() -> type:
    """engine/hostreads.py of this checkout, loaded by path: the worker may run another version's package."""
    spec = importlib.util.spec_from_file_location("hostreads", HERE.parents[1] / "dynamax_bench/engine/hostreads.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.HostReads


def count_host_reads(engine: BatchedGenerator, prompts: list[list[int]], strategy: Strategy) -> list[int]:
    """Host reads of each decode step and the read of its tokens (the first tokens' read excluded)."""
    mode, cls = host_reads_mode(), type(engine)
    step, read = cls._step, cls._read
    per_step: list[int] = []

    def counted(method, *args):
        with mode() as reads:
            result = method(*args)
        return result, reads.count

    def step_counted(self, *args):
        result, count = counted(step, self, *args)
        per_step.append(count)
        return result

    def read_counted(self, batch, hidden, decoded, *args):
        result, count = counted(read, self, batch, hidden, decoded, *args)
        if decoded is not None:
            per_step[-1] += count
        return result

    cls._step, cls._read = step_counted, read_counted
    try:
        engine.generate(prompts, strategy)
    finally:
        cls._step, cls._read = step, read
    return per_step


def ee_worker(batches: list[int], out: Path) -> None:
    """One pass of the `ee_methods` part in this process's version of the package, one torch thread."""
    torch.set_num_threads(1)
    bb = load("smollm2")
    exits = exit_positions({}, bb.num_layers)
    prompts = decode_heavy_prompts(bb)
    calibration = [s.prompt for s in get_task("triviaqa").load({"kind": "embedded"}, limit=4, num_fewshot=0)]
    strategies = {"full": Strategy.full(), **ee_strategies(bb, exits, calibration)}
    runs: dict = {}
    for batch_size in batches:
        for name, strategy in strategies.items():
            engine = BatchedGenerator(bb.model, bb.tokenizer, exit_layers=exits, max_new_tokens=NEW_TOKENS,
                                      eos_token_ids=[], batch_size=batch_size, share_prefixes=True)
            reads = count_host_reads(engine, prompts, strategy)  # also the warm-up
            start, start_cpu = time.perf_counter(), time.process_time()
            outputs = engine.generate(prompts, strategy)
            wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
            count = sum(len(g.token_ids) for g in outputs)
            runs[f"{name} batch {batch_size}"] = {
                "tokens": count, "tokens_per_s": count / wall, "tokens_per_cpu_s": count / cpu,
                "host_reads_per_step": statistics.mean(reads), "host_reads_per_step_max": max(reads),
                "generations": [{"tokens": g.token_ids, "exits": g.exit_layers,
                                 "near_ties": [t.token for t in g.near_ties]} for g in outputs],
            }
            print(f"  {name} batch {batch_size}: {count / wall:.1f} tokens/s, {count / cpu:.1f} per CPU s, "
                  f"{statistics.mean(reads):.2f} host reads per step", flush=True)
    write_json(out, {"thresholds": {name: s.rule.threshold for name, s in strategies.items() if s.rule},
                     "exit_layers": exits, "num_layers": bb.num_layers, "runs": runs})


def flops_for(bb: Backbone, exits: list[int], prompts: list[list[int]]) -> dict:
    """SmolLM2's FLOPs table for the cost ledger (fvcore counts, cached under benchmarks/out)."""
    from dynamax_bench.costs.flops import flops_table

    path = REPO_ROOT / "benchmarks" / "out" / "smollm2_flops.json"
    if not path.exists():
        context = round(statistics.mean(map(len, prompts))) + NEW_TOKENS // 2
        flops_table(bb.model.name_or_path, path, context_length=context, kinds=list(EE_KINDS), options={},
                    exits={"positions": exits})
    return json.loads(path.read_text())


def ceiling(generations: list[dict], batches: list[list[int]], num_layers: int) -> float:
    """L over the mean, over decode steps, of the deepest exit layer among a batch's rows: the speedup
    of skipping a layer only where every row of the step has left before it."""
    deepest = []
    for batch in batches:
        steps = max(len(generations[i]["exits"]) for i in batch)
        for t in range(1, steps):
            deepest.append(max(generations[i]["exits"][t] for i in batch if t < len(generations[i]["exits"])))
    return num_layers / statistics.mean(deepest)


def differences(before: list[dict], after: list[dict]) -> dict:
    """Rows whose tokens or exit layers differ between the versions, and whether the version after
    recorded a near tie at the first differing token (the only way the engine may differ)."""
    rows, explained = [], 0
    for row, (a, b) in enumerate(zip(before, after)):
        pairs_a, pairs_b = list(zip(a["tokens"], a["exits"])), list(zip(b["tokens"], b["exits"]))
        if pairs_a == pairs_b:
            continue
        first = next((i for i, (x, y) in enumerate(zip(pairs_a, pairs_b)) if x != y), min(len(pairs_a), len(pairs_b)))
        tied = first in b["near_ties"]
        explained += tied
        rows.append({"row": row, "token": first, "near_tie_after": tied, "near_tie_before": first in a["near_ties"]})
    return {"rows_differing": len(rows), "explained_by_a_near_tie": explained, "rows": rows}


def ee_methods(before: Path, pairs: int, batches: list[int], out: Path, note: str) -> None:
    """The `ee_methods` part: worker processes of the two versions, alternating, then the summary."""
    from dynamax_bench.costs.latency import decode_flops
    from dynamax_bench.engine.prefix import plan_batches
    from dynamax_bench.spec import parse_method

    roots = {"before": before.resolve(), "after": HERE.parents[1]}
    passes: dict[str, list[dict]] = {"before": [], "after": []}
    scratch = REPO_ROOT / "benchmarks" / "out" / "ee_methods"
    order = [v for k in range(pairs) for v in (("before", "after") if k % 2 == 0 else ("after", "before"))]
    load_averages = []  # the 1-minute load average as each pass starts: how shared the machine was
    for k, version in enumerate(order):
        path = scratch / f"{k}-{version}.json"
        print(f"pass {k + 1} of {len(order)}: {version} ({roots[version]})", flush=True)
        load_averages.append(float(Path("/proc/loadavg").read_text().split()[0]))
        env = {**os.environ, "PYTHONPATH": str(roots[version])}
        subprocess.run([sys.executable, str(HERE), "--worker", str(path), "--batches", *map(str, batches)],
                       env=env, check=True)
        passes[version].append(json.loads(path.read_text()))
    bb = load("smollm2")
    exits, num_layers = passes["after"][0]["exit_layers"], passes["after"][0]["num_layers"]
    prompts = decode_heavy_prompts(bb)
    table = flops_for(bb, exits, prompts)
    result: dict = {
        "backbone": bb.meta["name"], "machine": machine_description(), "cpu_count": os.cpu_count(),
        "torch_threads": 1, "exit_layers": exits, "prompts": len(prompts), "new_tokens": NEW_TOKENS,
        "versions": {v: str(r) for v, r in roots.items()}, "pairs": pairs, "pass_order": order,
        "load_average_per_pass": load_averages, "note": note,
        "thresholds": passes["after"][0]["thresholds"],
        "statistic": "median over passes (one timed run each, after a warm-up) of generated tokens per "
                     "wall-clock and per CPU second; passes of the two versions alternate, each its own process",
        "methods": {},
    }
    for key in passes["after"][0]["runs"]:
        name, batch_size = key.rsplit(" batch ", 1)
        entry: dict = {}
        for version, runs in passes.items():
            cells = [p["runs"][key] for p in runs]
            full = [p["runs"][f"full batch {batch_size}"] for p in runs]
            generations = cells[-1]["generations"]
            records = [{"prompt_tokens": len(p), "layers_executed": g["exits"]} for p, g in zip(prompts, generations)]
            method = parse_method("full" if name == "full" else f"{name}-t0.5")
            predicted = decode_flops(records, method, table)["predicted_speedup"]
            speedups = [c["tokens_per_cpu_s"] / f["tokens_per_cpu_s"] for c, f in zip(cells, full)]
            batches_planned = plan_batches(prompts, int(batch_size), True).batches
            decode_exits = [layer for g in generations for layer in g["exits"][1:]]
            entry[version] = {
                "tokens_per_s": statistics.median(c["tokens_per_s"] for c in cells),
                "tokens_per_cpu_s": statistics.median(c["tokens_per_cpu_s"] for c in cells),
                "tokens_per_cpu_s_all": [round(c["tokens_per_cpu_s"], 2) for c in cells],
                "speedup_over_full": statistics.median(speedups),
                "flops_predicted_speedup": predicted,
                "measured_over_predicted": statistics.median(speedups) / predicted,
                "ceiling_deepest_row": ceiling(generations, batches_planned, num_layers),
                "mean_decode_exit_layer": statistics.mean(decode_exits),
                "host_reads_per_step": cells[-1]["host_reads_per_step"],
                "host_reads_per_step_max": cells[-1]["host_reads_per_step_max"],
            }
        before_cells = [p["runs"][key] for p in passes["before"]]
        after_cells = [p["runs"][key] for p in passes["after"]]
        entry["after_over_before_cpu"] = [round(a["tokens_per_cpu_s"] / b["tokens_per_cpu_s"], 3)
                                          for a, b in zip(after_cells, before_cells)]
        entry["after_over_before_cpu_median"] = statistics.median(entry["after_over_before_cpu"])
        entry["generations_before_vs_after"] = differences(before_cells[-1]["generations"],
                                                           after_cells[-1]["generations"])
        result["methods"][key] = entry
        print(f"{key}: after {entry['after']['tokens_per_cpu_s']:.1f} (x{entry['after']['speedup_over_full']:.2f} "
              f"full, {entry['after']['measured_over_predicted']:.2f} of predicted), before "
              f"{entry['before']['tokens_per_cpu_s']:.1f}; after/before {entry['after_over_before_cpu_median']:.2f}",
              flush=True)
    write_json(out, result)


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
    parser.add_argument("--parts", nargs="+", choices=("ee_methods", "decode_heavy", "task_prompts"),
                        default=["decode_heavy", "task_prompts"], help="which workloads to measure")
    parser.add_argument("--before", type=Path, help="ee_methods: the checkout of the engine before the change")
    parser.add_argument("--pairs", type=int, default=3, help="ee_methods: passes of each version")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32], help="ee_methods: batch sizes")
    parser.add_argument("--note", default="", help="ee_methods: recorded in the JSON (e.g. what else ran)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # one ee_methods pass, written here
    parser.add_argument("--out", default="benchmarks/results/batched_throughput.json")
    args = parser.parse_args()
    if args.worker:
        ee_worker(args.batches, args.worker)
        return
    if "ee_methods" in args.parts:
        if args.before is None:
            parser.error("ee_methods compares two versions: pass --before <checkout of the code before>")
        ee_methods(args.before, args.pairs, args.batches, Path(args.out), args.note)
        return
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
