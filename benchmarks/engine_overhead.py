"""Engine overhead: tokens/s of the early-exit engine's `full` path against `model.generate`.

Same backbone, same prompts, same max_new_tokens, greedy; both paths produce the same tokens
(checked). Runs alternate (engine, generate, engine, ...) after one warm-up of each, and the
median over repeats is reported with the ratio.

    python benchmarks/engine_overhead.py --backbone resources/backbones/smollm2 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from dynamax_bench.backbones.prepare import load_backbone
from dynamax_bench.config import exit_positions
from dynamax_bench.engine import EarlyExitGenerator, Strategy
from dynamax_bench.files import write_json
from dynamax_bench.provenance import machine_description
from dynamax_bench.generation.tasks import get_task


def run_engine(engine: EarlyExitGenerator, prompts: list[str]) -> tuple[float, list[list[int]]]:
    start = time.perf_counter()
    outputs = [engine.generate(p, Strategy.full()).token_ids for p in prompts]
    return time.perf_counter() - start, outputs


def run_generate(backbone, prompts: list[str], max_new_tokens: int) -> tuple[float, list[list[int]]]:
    outputs = []
    start = time.perf_counter()
    with torch.inference_mode():
        for prompt in prompts:
            ids = backbone.tokenizer(prompt, return_tensors="pt").input_ids
            out = backbone.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                          do_sample=False)
            outputs.append(out[0, ids.shape[1]:].tolist())
    return time.perf_counter() - start, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resources/backbones/smollm2")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/engine_overhead.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    backbone = load_backbone(args.backbone)
    prompts = [s.prompt for s in get_task("triviaqa").load({"kind": "embedded"}, limit=args.prompts, num_fewshot=5)]
    engine = EarlyExitGenerator(backbone.model, backbone.tokenizer,
                                exit_layers=exit_positions({}, backbone.num_layers), max_new_tokens=args.max_new_tokens)

    _, reference = run_generate(backbone, prompts, args.max_new_tokens)  # warm-up
    _, ours = run_engine(engine, prompts)
    assert ours == reference, "the engine's full path must reproduce model.generate"
    tokens = sum(len(t) for t in reference)
    engine_tps, generate_tps = [], []
    for _ in range(args.repeats):
        seconds, _ = run_engine(engine, prompts)
        engine_tps.append(tokens / seconds)
        seconds, _ = run_generate(backbone, prompts, args.max_new_tokens)
        generate_tps.append(tokens / seconds)

    result = {
        "backbone": backbone.meta["name"],
        "machine": f"{machine_description()}, torch threads {args.threads}",
        "prompts": len(prompts),
        "tokens_per_run": tokens,
        "repeats": args.repeats,
        "engine_tokens_per_s": {"median": statistics.median(engine_tps), "min": min(engine_tps), "max": max(engine_tps)},
        "generate_tokens_per_s": {"median": statistics.median(generate_tps), "min": min(generate_tps),
                                  "max": max(generate_tps)},
        "engine_over_generate_time": statistics.median(generate_tps) / statistics.median(engine_tps),
    }
    write_json(Path(args.out), result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
