"""Would regrouping rows by exit segment beat running the rows still running? A cost model, on CPU.

The batched engine runs a decode step for every row of a batch at once; after an exit, the later
layers run on the rows still running (engine/batched.py). The alternative the issue names,
regrouping, lets each row move through the segments between exit points at its own pace: a pool
of rows, one queue per segment (and one for reading tokens), each tick running the fullest queue,
so a layer call holds as many rows as wait for it. Whether that pays depends on how a layer's
cost grows with its rows, so this script measures that and simulates the schedules:

1. Cost model: one SmolLM2 decoder layer on the static cache (context of `--context` tokens) and
   the final norm + LM head, timed at 1 to 32 rows (CPU time, median of repeats, one thread);
   a least-squares line gives a fixed part (the weights streamed from memory) and a part per row.
2. Exit traces: the batched engine's decode of 32 TriviaQA questions, 32 new tokens, EOS off,
   for each early-exit method of benchmarks/batched_throughput.py (exits 15/20/24/29, policy copy).
3. Schedules, costed with the model: `full`; masking (a step runs as deep as its deepest row);
   running rows (each layer runs on the rows that have not exited); regrouping with a pool of the
   batch, and with a pool of all 32 rows and ticks of at most the batch size.

It is a model: memory effects between calls, the gathers of rows, Python overheads and the
policy's fills are left out of every schedule alike.

    python benchmarks/regroup_simulation.py --out benchmarks/results/regroup_simulation.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bench_backbones import backbone as load
from batched_throughput import NEW_TOKENS, decode_heavy_prompts, ee_strategies
from dynamax_bench.config import exit_positions
from dynamax_bench.engine import BatchedGenerator
from dynamax_bench.engine.stacks import layer_stack
from dynamax_bench.engine.static import StaticKV
from dynamax_bench.files import write_json
from dynamax_bench.generation.tasks import get_task
from dynamax_bench.provenance import machine_description

ROWS = (1, 2, 4, 8, 12, 16, 24, 32)


def cpu_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def cost_model(bb, context: int, repeats: int) -> dict:
    """Seconds of one decoder layer and of the head at each row count, and the fitted lines."""
    stack = layer_stack(bb.model)
    config = bb.model.config
    heads, dim = config.num_key_value_heads, config.hidden_size // config.num_attention_heads
    layer, head = {}, {}
    with torch.inference_mode():
        for rows in ROWS:
            keys = torch.randn(1, rows, heads, context + 8, dim)
            mask = torch.zeros(rows, context + 8, dtype=torch.bool)
            mask[:, :context] = True
            cache = StaticKV(keys, torch.randn_like(keys), mask, [context] * rows, [0] * rows, [False] * rows)
            cache.begin()
            hidden = torch.randn(rows, 1, config.hidden_size)
            inputs = stack.decode_inputs(hidden, cache, torch.full((rows,), context))
            layer[rows] = cpu_seconds(lambda: stack.run_rows(0, hidden, cache, inputs, None), repeats)
            head[rows] = cpu_seconds(lambda: stack.head(hidden), repeats)
    fits = {}
    for name, values in (("layer", layer), ("head", head)):
        slope, fixed = np.polyfit(list(values), list(values.values()), 1)
        fits[name] = {"fixed_s": float(fixed), "per_row_s": float(slope), "measured_s": values,
                      "fixed_in_rows": float(fixed / slope)}
    return fits


def simulate(traces: list[list[int]], bounds: list[int], batch: int, pool: int, model: dict) -> dict:
    """Cost of each schedule for these exit traces (one list of decode-step exit layers per row)."""
    layer = lambda n: model["layer"]["fixed_s"] + model["layer"]["per_row_s"] * n  # noqa: E731
    head = lambda n: model["head"]["fixed_s"] + model["head"]["per_row_s"] * n  # noqa: E731
    num_layers = bounds[-1]
    full = masked = running = 0.0
    for start in range(0, len(traces), batch):
        rows = traces[start:start + batch]
        for step in range(len(rows[0])):
            exits = [r[step] for r in rows]
            full += num_layers * layer(len(rows)) + head(len(rows))
            masked += max(exits) * layer(len(rows)) + head(len(rows))
            running += sum(layer(sum(e > i for e in exits)) for i in range(max(exits))) + head(len(rows))
    segments = list(zip(bounds[:-1], bounds[1:]))
    regroup = 0.0
    for start in range(0, len(traces), pool):
        rows = traces[start:start + pool]
        done = [0] * len(rows)
        stage = [0] * len(rows)  # a segment, or len(segments): waiting for its token to be read
        while any(d < len(rows[0]) for d in done):
            queues: dict[int, list[int]] = {}
            for r in range(len(rows)):
                if done[r] < len(rows[0]):
                    queues.setdefault(stage[r], []).append(r)
            chosen = max(queues, key=lambda s: (min(len(queues[s]), batch), s))
            members = queues[chosen][:batch]
            if chosen == len(segments):
                regroup += head(len(members))
                for r in members:
                    done[r] += 1
                    stage[r] = 0
                continue
            low, high = segments[chosen]
            regroup += (high - low) * layer(len(members))
            for r in members:
                stage[r] = len(segments) if rows[r][done[r]] == high else chosen + 1
    return {"full_s": full, "speedup_masking": full / masked, "speedup_running_rows": full / running,
            "speedup_regrouping": full / regroup}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--context", type=int, default=64, help="cached tokens per row in the cost model")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/regroup_simulation.json"))
    parser.add_argument("--note", default="", help="recorded in the JSON (e.g. what else ran on the machine)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_average = float(Path("/proc/loadavg").read_text().split()[0])  # how shared the machine was
    bb = load("smollm2")
    exits = exit_positions({}, bb.num_layers)
    model = cost_model(bb, args.context, args.repeats)
    prompts = decode_heavy_prompts(bb)
    calibration = [s.prompt for s in get_task("triviaqa").load({"kind": "embedded"}, limit=4, num_fewshot=0)]
    result: dict = {"backbone": bb.meta["name"], "machine": machine_description(), "torch_threads": 1,
                    "exit_layers": exits, "prompts": len(prompts), "new_tokens": NEW_TOKENS,
                    "load_average_at_start": load_average, "note": args.note, "cost_model": model, "methods": {}}
    engine = BatchedGenerator(bb.model, bb.tokenizer, exit_layers=exits, max_new_tokens=NEW_TOKENS, eos_token_ids=[],
                              batch_size=len(prompts))
    for name, strategy in ee_strategies(bb, exits, calibration).items():
        traces = [g.exit_layers[1:] for g in engine.generate(prompts, strategy)]
        entry = {"mean_decode_exit_layer": statistics.mean(e for t in traces for e in t)}
        for batch in (16, 32):
            entry[f"batch {batch}, pool {batch}"] = simulate(traces, [0, *exits, bb.num_layers], batch, batch, model)
            if batch < len(prompts):
                entry[f"batch {batch}, pool {len(prompts)}"] = simulate(traces, [0, *exits, bb.num_layers], batch,
                                                                         len(prompts), model)
        result["methods"][name] = entry
        print(name, {k: {m: round(v, 2) for m, v in e.items() if m.startswith("speedup")} if isinstance(e, dict) else e
                     for k, e in entry.items()}, flush=True)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
