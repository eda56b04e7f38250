"""The `latency` rule: wall-clock time of the model's work for one method, batch 1, after warm-up.

What is timed is the model's work alone: every prompt is tokenised once, before any clock runs,
and the engine is given token ids (its stop strings are checked on the tokens as they come; the
rule itself decodes nothing). Per repeat and prompt, one run with the task's max_new_tokens, timed
by one clock (torch.cuda.Event on a GPU, time.perf_counter on a CPU) at its start, its end, and
the mark the engine makes once it has read the first token (`on_first_token`):

  time to first token  the prompt's forward through every kept layer, a stateful exit method's
                       pass over the prompt at every exit, the head;
  time per decode step (whole sample - first token) / (tokens - 1): the steps where early exit saves.

Both parts come from one run, so the decode time is never the difference of two noisy runs (a
sample of two tokens has one decode step, far below the run-to-run spread of a prompt's forward).
The file holds the median and the spread (25th and 75th percentiles, min, max) over repeats x
prompts. At least two warm-up prompts (the schema's minimum) run both paths first.

A `spec-*` method (self-speculative decoding) is timed the same way, speculating; its file adds its
acceptance on the timed prompts (`speculation`) and `block_seconds`: what one layer's decode step, its
pass over m positions and the head cost on this machine (costs/speculation.py), from which the tables
predict its speedup. It has no batched throughput (batch 1 only).

Beside it, where `throughput_batch` is set, the decode throughput of the same method on the batched
engine: the task's first `throughput_batch` prompts as one batch, one warm-up run, then `repeats`
runs; decode tokens per second is (generated tokens - one per row) over (batch time - time to the
batch's first tokens). The prompt pass is outside that rate, so it is computed once, by the warm-up
run (its shared prefix once: TruthfulQA's QA primer made most of a job's time when each row
prefilled it), and each timed run decodes from a copy of it. Rows that stop leave the batch; rows that
exit early are masked, not removed, at the layers they skip (engine/batched.py), so this is what
early exit gives a server running batches, which batch-1 latency does not say.
Speedups against `full` come from `full` timed in the same job, next to the method: every timed run
of the method (prompt, repeat) has a run of `full` on the same prompt beside it, the order alternating,
and the throughput's batches likewise. A CPU's speed drifts between jobs (with one `full` job per run,
two idle runs' speedups differed by factors of 0.94-1.35, their intervals disjoint for 16 of 22
methods); a drift slower than one pair of runs reaches both sides of a pair alike. The file keeps each run's
decode-step time (`decode_seconds`, per prompt and repeat) and `full`'s beside it (`reference`); the
tables resample prompts with their repeats (reporting/speedups.py). A job has every core the run has,
so jobs do not share the processor while timing.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from statistics import median

import numpy as np
import torch
from tqdm import tqdm

from dynamax_bench.costs.ledger import cell_flops
from dynamax_bench.costs.speculation import GRID_DRAFTS, BlockCosts, speculation_summary
from dynamax_bench.engine.speculative import rounds_for
from dynamax_bench.engine.stacks import LayerStack
from dynamax_bench.generation.decoder import Decoder
from dynamax_bench.files import read_json, write_json
from dynamax_bench.provenance import machine_description
from dynamax_bench.generation.tasks import Task, load_samples
from dynamax_bench.spec import DecodeSpec, MethodSpec, TaskSpec, parse_method

log = logging.getLogger(__name__)


class Clock:
    """Times a call and a mark inside it with one clock: CUDA events on a GPU (synchronised before
    the start and after the end), time.perf_counter on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device

    def _now(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def mark(self) -> None:
        self._marks.append(self._now())

    def run(self, fn: Callable[[Callable[[], None]], object]) -> tuple[float, list[float], object]:
        """(seconds of fn(mark), seconds from the start to each mark, fn's result)."""
        self._marks = []
        if self.cuda:
            torch.cuda.synchronize(self.device)
        start = self._now()
        out = fn(self.mark)
        end = self._now()
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return start.elapsed_time(end) / 1000.0, [start.elapsed_time(m) / 1000.0 for m in self._marks], out
        return end - start, [m - start for m in self._marks], out


def spread(values: list[float]) -> dict[str, float] | None:
    """Median, quartiles and range; None when nothing was measured (every sample stopped at its
    first token, so no decode step was timed)."""
    if not values:
        return None
    q25, q75 = np.percentile(values, [25, 75])
    return {"median": median(values), "p25": float(q25), "p75": float(q75), "min": min(values), "max": max(values)}


def _seconds_each(blocks: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median wall time of each block's call over `repeats` rounds, after one warm-up round; the blocks
    take turns within every round, so a change of the machine's load reaches them all alike (CUDA
    synchronised around each call)."""
    times: dict[str, list[float]] = {name: [] for name in blocks}
    for round_ in range(repeats + 1):
        for name, fn in blocks.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_:
                times[name].append(time.perf_counter() - start)
    return {name: median(values) for name, values in times.items()}


@torch.inference_mode()
def block_seconds(stack: LayerStack, context: int, positions: Iterable[int] = range(1, GRID_DRAFTS[-1] + 2),
                  repeats: int = 7) -> BlockCosts:
    """The blocks' wall time at batch 1 on this machine, timed through the engine's own calls on the last
    layer (all layers are alike) after `context` positions: its plain decode step, the verification's
    pass over m positions (`rounds_for(stack, L - 1).verify`, which runs exactly that layer), its step
    inside a draft (m = 1 of the same, with a Mamba-2 state snapshot), and the head at one position and
    at m at once. Medians of `repeats` interleaved rounds (`_seconds_each`)."""
    model, last = stack.model, stack.num_layers - 1
    device, width = model.device, stack.config.hidden_size
    prefilled = stack.new_cache()
    mask = torch.ones(1, context, dtype=torch.long, device=device)
    prompt = torch.randn(1, context, width, dtype=model.dtype, device=device)
    stack.layer(last, prompt, prefilled, stack.step_inputs(prompt, prefilled, mask, layer_idx=last))
    rounds = rounds_for(stack, last)
    positions = sorted(set(positions) | {1})
    states = {m: torch.randn(1, m, width, dtype=model.dtype, device=device) for m in positions}
    step_mask = torch.ones(1, context + 1, dtype=torch.long, device=device)

    def over(m: int) -> Callable[[], object]:
        def run() -> None:  # from a copy of the prefilled cache: every call verifies after `context` positions
            rounds.begin()
            rounds.verify(states[m], copy.deepcopy(prefilled), context)
        return run

    def step() -> None:
        cache = copy.deepcopy(prefilled)
        stack.layer(last, states[1], cache, stack.step_inputs(states[1], cache, step_mask, layer_idx=last))

    blocks: dict[str, Callable[[], object]] = {"step": step, "head": lambda: stack.head(states[1]),
                                               "copy": lambda: copy.deepcopy(prefilled)}
    blocks.update({f"over {m}": over(m) for m in positions})
    blocks.update({f"head {m}": (lambda m=m: stack.head_all(states[m])) for m in positions})
    found = _seconds_each(blocks, repeats, device)
    copying = found["copy"]  # each layer call above starts from a copy of the cache: not the layer's time
    over_seconds = {m: max(0.0, found[f"over {m}"] - copying) for m in positions}
    return BlockCosts(unit="seconds", num_layers=stack.num_layers, step=max(0.0, found["step"] - copying),
                      lower=over_seconds[1], over=over_seconds, head=found["head"],
                      head_over={m: found[f"head {m}"] for m in positions})


def decode_flops(records: list[dict], method: MethodSpec, table: dict) -> dict:
    """FLOPs per decode step of the timed samples (the cost ledger over their prompt lengths and exit
    traces, as for a cell) against the full model's: the speedup the FLOPs predict for those steps."""
    ledger = cell_flops(records, method, table)
    executed, full = ledger["per_token_executed"], ledger["per_token_full"]
    return {"executed": executed, "full": full, "predicted_speedup": full / executed if executed else None}


def measure_throughput(decoder: Decoder, prompts: list[list[int]], stop_strings: list[str], max_new_tokens: int,
                       repeats: int, clock: Clock, reference: Decoder | None = None) -> dict:
    """Decode tokens per second of the spec's method with `prompts` as one batch (see the module's docstring),
    and `reference`'s (full) on the same batch, its batches taking turns with the method's."""
    engines = {"method": decoder}
    if reference is not None:
        engines["reference"] = reference
    runs = {name: (d.batched_generator(stop_strings, max_new_tokens, batch_size=len(prompts), share_prefixes=True),
                   d.strategy) for name, d in engines.items()}
    kept: dict[str, dict] = {name: {} for name in runs}  # each batch's prompt pass, computed by the warm-up run
    for name, (engine, strategy) in runs.items():
        engine.generate(prompts, strategy, kept=kept[name])  # warm-up; each timed run decodes from a copy of it
    batch, first, rate, tokens = ({name: [] for name in runs} for _ in range(4))
    for repeat in tqdm(range(repeats), desc=f"throughput {decoder.spec.method.name}", unit="repeat"):
        for name in alternating(list(runs), repeat):
            engine, strategy = runs[name]
            # one batch: one mark, when every row's first token has been read (engine/batched.py)
            seconds, (to_first,), generations = clock.run(
                lambda mark: engine.generate(prompts, strategy, on_first_token=mark, kept=kept[name]))
            decoded = sum(len(g.token_ids) - 1 for g in generations)
            batch[name].append(seconds)
            first[name].append(to_first)
            tokens[name].append(decoded)
            if decoded:
                rate[name].append(decoded / (seconds - to_first))
    result = {
        "batch_size": len(prompts),
        "prefix_cache": runs["method"][0].share_prefixes,
        "repeats": repeats,
        "decode_tokens": tokens["method"][0],  # greedy: the same tokens every repeat
        "seconds_per_batch": spread(batch["method"]),
        "seconds_to_first_tokens": spread(first["method"]),
        "decode_tokens_per_second": spread(rate["method"]),
        "timing": "one batch of token ids, one warm-up run, which computes the prompt pass; each timed run decodes "
                  "from a copy of it (seconds_to_first_tokens: the copy and the first tokens' head, no prompt pass); "
                  "decode tokens (all but each row's first) over the batch's time after its first tokens (one clock: "
                  "its mark once the engine has read the first tokens)",
        "reference": None,  # `full` itself: its own reference
    }
    if reference is not None:
        result["reference"] = {"method": reference.spec.method.name, "decode_tokens": tokens["reference"][0],
                               "decode_tokens_per_second": spread(rate["reference"]),
                               "timing": "timed in this job, its batch and the method's taking turns per repeat"}
    return result


def alternating(names: list[str], turn: int) -> list[str]:
    """`names` in order on even turns, reversed on odd ones: neither side of a pair always runs first
    (after the other's caches, or on a clock that speeds up)."""
    return names if turn % 2 == 0 else names[::-1]


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
    `settings["warmup"]` warm-up prompts, `settings["repeats"]` times; then, where
    `settings["throughput_batch"]` is set, its decode throughput at that batch size."""
    return measure_latencies([spec], task_spec, settings, backbone_dir, [out_path], flops_path, classifiers)[0]


def measure_latencies(
    specs: list[DecodeSpec],
    task_spec: TaskSpec,
    settings: dict,
    backbone_dir: str | Path,
    out_paths: list[str | Path],
    flops_path: str | Path,
    classifiers: str | Path | None = None,
) -> list[dict]:
    """`measure_latency` for several methods of one backbone in one job (a latency sweep): the
    start-up and the backbone load are shared; each method is timed after its own warm-up, one method
    after the other, each next to `full` (the same spec with the full model: the speedup's reference)."""
    if len(specs) != len(out_paths):
        raise ValueError(f"{len(specs)} decode specs but {len(out_paths)} output files")
    *decoders, full = Decoder.load_all([*specs, replace(specs[0], method=parse_method("full"))], backbone_dir,
                                       classifiers)
    task, samples = load_samples(task_spec)
    tokenizer = full.backbone.tokenizer  # one backbone for all: the prompts are tokenised once
    prompts = [tokenizer(s.prompt).input_ids for s in samples[: settings["prompts"]]]  # outside every timed window
    batch_ids = [tokenizer(s.prompt).input_ids for s in samples[: settings.get("throughput_batch") or 0]]
    return [_measure(decoder, None if decoder.spec.method.kind == "full" else full, task_spec, task, prompts,
                     batch_ids, settings, out_path, flops_path)
            for decoder, out_path in zip(decoders, out_paths)]


def _measure(decoder: Decoder, reference: Decoder | None, task_spec: TaskSpec, task: Task, prompts: list[list[int]],
             batch_ids: list[list[int]], settings: dict, out_path: str | Path, flops_path: str | Path) -> dict:
    """One method's latency file (`measure_latency`), its backbone loaded and its prompts tokenised;
    `reference` (full; None when the method is full) timed beside it, run for run."""
    spec = decoder.spec
    method = spec.method.name
    runs = {"method": decoder.batch1(task.stop_strings, spec.max_new_tokens)}  # a spec-* method speculates
    if reference is not None:
        runs["reference"] = reference.batch1(task.stop_strings, spec.max_new_tokens)
    clock = Clock(decoder.backbone.model.device)
    for i in range(settings["warmup"]):
        for run in runs.values():
            run(prompts[i % len(prompts)])
    per_sample, per_token, first_token, tokens, records = [], [], [], [], []
    # decode-step seconds of each prompt, one per repeat ([] when it stopped at its first token)
    decode: dict[str, list[list[float]]] = {name: [[] for _ in prompts] for name in runs}
    for repeat in tqdm(range(settings["repeats"]), desc=f"latency {method}", unit="repeat"):
        for i, ids in enumerate(prompts):
            for name in alternating(list(runs), repeat + i):
                seconds, (first,), out = clock.run(lambda mark, run=runs[name], ids=ids: run(ids, on_first_token=mark))
                n = len(out.token_ids)
                if n > 1:
                    decode[name][i].append((seconds - first) / (n - 1))
                if name != "method":
                    continue
                per_sample.append(seconds)
                per_token.append(seconds / n)
                first_token.append(first)
                tokens.append(n)
                if repeat == 0:  # greedy decoding: every repeat generates the same tokens
                    records.append({"prompt_tokens": len(ids), "layers_executed": out.exit_layers})
                    if decoder.speculation is not None:
                        records[-1]["speculation"] = {"drafted": out.drafted, "accepted": out.accepted}
    per_decode_token = [t for times in decode["method"] for t in times]
    device = decoder.backbone.model.device
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
        "seconds_to_first_token": spread(first_token),  # the clock's mark at the first token, same run
        "seconds_per_decode_token": spread(per_decode_token),  # what Table 3's speedup and Figure 3 use
        # per prompt, one per repeat: the speedup pairs each with `reference`'s run of the same prompt and repeat
        "decode_seconds": decode["method"],
        "reference": None,  # `full` itself: its own reference
        "decode_tokens": sum(len(r["layers_executed"]) - 1 for r in records) * settings["repeats"],
        "flops_per_decode_token": decode_flops(records, spec.method, read_json(flops_path)),
        "timing": "token ids given (tokenisation outside the clock); one run per prompt and repeat, one clock: first "
                  "token: its mark once the engine has read the first token; decode step: (whole sample - first "
                  "token) / (tokens - 1), both from that run",
        "timer": "torch.cuda.Event" if device.type == "cuda" else "time.perf_counter",
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "machine": machine_description(),
    }
    if reference is not None:
        result["reference"] = {
            "method": reference.spec.method.name,
            "decode_seconds": decode["reference"],
            "seconds_per_decode_token": spread([t for times in decode["reference"] for t in times]),
            "timing": "timed in this job after the same warm-up, each run next to the method's run of the same prompt "
                      "and repeat, which of the two runs first alternating",
        }
    result["throughput"] = None  # a spec-* method decodes at batch 1 only (engine/speculative.py)
    if decoder.speculation is not None:  # its acceptance on the timed prompts, and what its blocks cost here
        result["speculation"] = speculation_summary(records)
        context = round(float(np.median([len(ids) for ids in prompts]))) + spec.max_new_tokens // 2
        result["block_seconds"] = {"context": context, **block_seconds(
            decoder.speculative_generator(task.stop_strings, spec.max_new_tokens).stack, context).to_dict()}
    if batch_ids and decoder.speculation is None:
        result["throughput"] = measure_throughput(decoder, batch_ids, task.stop_strings, spec.max_new_tokens,
                                                  settings["repeats"], clock, reference)
        rate = result["throughput"]["decode_tokens_per_second"]
        log.info("%s %s: %s decode tokens per second at batch %d (median of %d)", spec.backbone, method,
                 f"{rate['median']:.1f}" if rate else "no", len(batch_ids), settings["repeats"])
    write_json(out_path, result)
    log.info("%s %s: %.2f ms to the first token, %s ms per decode step (medians of %d samples)",
             result["backbone"], method, 1000 * result["seconds_to_first_token"]["median"],
             f"{1000 * result['seconds_per_decode_token']['median']:.2f}" if per_decode_token else "no", len(per_sample))
    return result
