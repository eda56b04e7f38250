"""The `latency` rule: wall-clock time of one method on a fixed prompt set, after warm-up.

Per repeat, every prompt is generated once; each sample's time is recorded (torch.cuda.Event pairs
on a GPU, time.perf_counter on a CPU) and split into the time to the first token (the prompt's
forward, which runs every layer whatever the method) and the time per decode step after it, where
early exit saves. The file holds the median and the spread (25th and 75th percentiles, min, max)
over repeats x prompts. Speedups against `full` are computed by the tables from the `full` job of
the same run and profile, on the same prompts and machine (each method is its own job, run with
every core the run has, so jobs do not share the processor while timing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

import numpy as np
import torch
from tqdm import tqdm

from dynamax_bench.costs.ledger import full_token_flops, token_cost
from dynamax_bench.generation.decoder import Decoder
from dynamax_bench.files import read_json, write_json
from dynamax_bench.provenance import machine_description
from dynamax_bench.generation.tasks import load_samples
from dynamax_bench.spec import DecodeSpec, MethodSpec, TaskSpec

log = logging.getLogger(__name__)


def timer(device: torch.device) -> Callable[[Callable[[], object]], tuple[float, object]]:
    """Seconds taken by a call: CUDA events on a GPU (after synchronising), perf_counter on a CPU."""
    if device.type == "cuda":
        def run(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            out = fn()
            end.record()
            torch.cuda.synchronize(device)
            return start.elapsed_time(end) / 1000.0, out
    else:
        def run(fn):
            began = time.perf_counter()
            out = fn()
            return time.perf_counter() - began, out
    return run


def spread(values: list[float]) -> dict[str, float] | None:
    """Median, quartiles and range; None when nothing was measured (every sample stopped at its
    first token, so no decode step was timed)."""
    if not values:
        return None
    q25, q75 = np.percentile(values, [25, 75])
    return {"median": median(values), "p25": float(q25), "p75": float(q75), "min": min(values), "max": max(values)}


def decode_flops(decode_exits: list[int], method: MethodSpec, table: dict) -> dict:
    """FLOPs per decode step of the timed tokens (the `flops` rule's block table over their exit
    trace, as for a cell) against the full model's: the speedup the FLOPs predict for them."""
    full = full_token_flops(table)
    if not decode_exits:
        return {"executed": None, "full": float(full), "predicted_speedup": None}
    executed = sum(token_cost(layers, False, method, table) for layers in decode_exits) / len(decode_exits)
    return {"executed": executed, "full": float(full), "predicted_speedup": full / executed}


def measure_latency(
    spec: DecodeSpec,
    task_spec: TaskSpec,
    settings: dict,
    backbone_dir: str | Path,
    out_path: str | Path,
    flops_path: str | Path,
    classifiers: str | Path | None = None,
) -> dict:
    """Time `spec` (batch 1) on the first `settings["prompts"]` samples of its task, after
    `settings["warmup"]` warm-up prompts, `settings["repeats"]` times."""
    decoder = Decoder.load(spec, backbone_dir, classifiers)
    method = spec.method.name
    task, samples = load_samples(task_spec)
    prompts = [s.prompt for s in samples[: settings["prompts"]]]
    generator = decoder.generator(task.stop_strings, spec.max_new_tokens)
    strategy = decoder.strategy
    clock = timer(decoder.backbone.model.device)
    for prompt in prompts[: settings["warmup"]]:
        generator.generate(prompt, strategy)
    per_sample, per_token, first_token, per_decode_token, tokens, decode_exits = [], [], [], [], [], []
    for _ in tqdm(range(settings["repeats"]), desc=f"latency {method}", unit="repeat"):
        for prompt in prompts:
            seconds, out = clock(lambda p=prompt: generator.generate(p, strategy))
            n = len(out.token_ids)
            per_sample.append(seconds)
            per_token.append(seconds / n)
            first_token.append(out.first_token_seconds)
            if n > 1:
                per_decode_token.append((seconds - out.first_token_seconds) / (n - 1))
            tokens.append(n)
            decode_exits.extend(out.exit_layers[1:])
    result = {
        "backbone": spec.backbone,
        "method": method,
        "spec": spec.to_dict(),
        "task": task_spec.name,
        "prompts": len(prompts),
        "repeats": settings["repeats"],
        "warmup": settings["warmup"],
        "max_new_tokens": spec.max_new_tokens,
        "mean_tokens": float(np.mean(tokens)),
        "seconds_per_sample": spread(per_sample),
        "seconds_per_token": spread(per_token),  # the whole sample over its tokens, prompt included
        "seconds_to_first_token": spread(first_token),
        "seconds_per_decode_token": spread(per_decode_token),  # what Table 3's speedup and Figure 3 use
        "decode_tokens": len(decode_exits),
        "flops_per_decode_token": decode_flops(decode_exits, spec.method, read_json(flops_path)),
        "timer": "torch.cuda.Event" if decoder.backbone.model.device.type == "cuda" else "time.perf_counter",
        "device": str(decoder.backbone.model.device),
        "torch_threads": torch.get_num_threads(),
        "machine": machine_description(),
    }
    write_json(out_path, result)
    log.info("%s %s: %.2f ms to the first token, %s ms per decode step (medians of %d samples)",
             result["backbone"], method, 1000 * result["seconds_to_first_token"]["median"],
             f"{1000 * result['seconds_per_decode_token']['median']:.2f}" if per_decode_token else "no", len(per_sample))
    return result
