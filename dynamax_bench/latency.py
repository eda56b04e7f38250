"""The `latency` rule: wall-clock time of one method on a fixed prompt set, after warm-up.

Per repeat, every prompt is generated once; the time of each sample and its time per generated
token are recorded (torch.cuda.Event pairs on a GPU, time.perf_counter on a CPU). The file holds
the median and the spread (25th and 75th percentiles, min, max) over repeats x prompts. Speedups
against `full` are computed by the tables from the `full` job of the same run and profile, on the
same prompts and machine (each method is its own job, run with every core the run has, so jobs do
not share the processor while timing).
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

from .harness import DynamaxLM
from .io import write_json
from .provenance import machine_description
from .tasks import load_samples

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


def spread(values: list[float]) -> dict[str, float]:
    q25, q75 = np.percentile(values, [25, 75])
    return {"median": median(values), "p25": float(q25), "p75": float(q75), "min": min(values), "max": max(values)}


def measure_latency(
    config: dict, backbone_dir: str | Path, method: str, out_path: str | Path, classifiers: str | Path | None = None
) -> dict:
    settings = config["latency"]
    lm = DynamaxLM.from_profile(config, backbone_dir, method, classifiers)
    task, samples = load_samples(config, settings["task"])
    prompts = [s.prompt for s in samples[: settings["prompts"]]]
    generator = lm.generator(task.stop_strings, settings["max_new_tokens"])
    clock = timer(lm.backbone.model.device)
    for prompt in prompts[: settings["warmup"]]:
        generator.generate(prompt, lm.strategy)
    per_sample, per_token, tokens = [], [], []
    for _ in tqdm(range(settings["repeats"]), desc=f"latency {method}", unit="repeat"):
        for prompt in prompts:
            seconds, out = clock(lambda p=prompt: generator.generate(p, lm.strategy))
            per_sample.append(seconds)
            per_token.append(seconds / len(out.token_ids))
            tokens.append(len(out.token_ids))
    result = {
        "backbone": lm.backbone.meta["name"],
        "method": method,
        "task": settings["task"],
        "prompts": len(prompts),
        "repeats": settings["repeats"],
        "warmup": settings["warmup"],
        "max_new_tokens": settings["max_new_tokens"],
        "mean_tokens": float(np.mean(tokens)),
        "seconds_per_sample": spread(per_sample),
        "seconds_per_token": spread(per_token),
        "timer": "torch.cuda.Event" if lm.backbone.model.device.type == "cuda" else "time.perf_counter",
        "device": str(lm.backbone.model.device),
        "torch_threads": torch.get_num_threads(),
        "machine": machine_description(),
    }
    write_json(out_path, result)
    log.info("%s %s: %.2f ms per token (median of %d)", result["backbone"], method,
             1000 * result["seconds_per_token"]["median"], len(per_token))
    return result
