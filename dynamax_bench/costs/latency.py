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
exit early leave the layers they skip (engine/batched.py), so this is what early exit gives a server
running batches, which batch-1 latency does not say.
Speedups against `full` come from `full` timed in the same job, in the same rounds as the methods: each
(repeat, prompt) has one run of `full` and one of every method of the job (a latency sweep times all the
methods of a policy), their order rotating from one turn to the next; the throughput's batches likewise,
one round per repeat. A CPU's speed drifts between jobs (with one `full` job per run, two idle runs'
speedups differed by factors of 0.94-1.35, their intervals disjoint for 16 of 22 methods); a drift
slower than one round reaches the methods and `full` alike. One `full` run per round, not one per
method and round, took SmolLM2's ten-method sweep from 623 s to 362-372 s (docs/costs.md). The file
keeps each run's decode-step time (`decode_seconds`, per prompt and repeat) and `full`'s of the same
round (`reference`); the tables resample prompts with their repeats (reporting/speedups.py). A job has
every core the run has, so jobs do not share the processor while timing.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
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


def measure_throughput(decoders: dict[str, Decoder], prompts: list[list[int]], stop_strings: list[str],
                       max_new_tokens: int, repeats: int, clock: Clock) -> dict[str, dict]:
    """Decode tokens per second of each decoder's method with `prompts` as one batch (see the module's
    docstring), keyed like `decoders`: one warm-up batch each, then `repeats` rounds in which every method
    decodes the batch once, the order rotating (`rotated`). The decoders share one backbone: methods whose
    prompt pass is the same (`full` and every stateless exit kind) read one kept pass."""
    runs = {name: (d.batched_generator(stop_strings, max_new_tokens, batch_size=len(prompts), share_prefixes=True),
                   d.strategy) for name, d in decoders.items()}
    kept: dict = {}  # each batch's prompt pass by its key (Strategy.prompt_pass), computed by the first warm-up
    for engine, strategy in runs.values():
        engine.generate(prompts, strategy, kept=kept)  # warm-up; each timed run decodes from a copy of its pass
    batch, first, rate, tokens = ({name: [] for name in runs} for _ in range(4))
    for repeat in tqdm(range(repeats), desc=f"throughput {len(runs)} methods", unit="round"):
        for name in rotated(list(runs), repeat):
            engine, strategy = runs[name]
            # one batch: one mark, when every row's first token has been read (engine/batched.py)
            seconds, (to_first,), generations = clock.run(
                lambda mark: engine.generate(prompts, strategy, on_first_token=mark, kept=kept))
            decoded = sum(len(g.token_ids) - 1 for g in generations)
            batch[name].append(seconds)
            first[name].append(to_first)
            tokens[name].append(decoded)
            if decoded:
                rate[name].append(decoded / (seconds - to_first))
    return {name: {
        "batch_size": len(prompts),
        "prefix_cache": engine.share_prefixes,
        "repeats": repeats,
        "decode_tokens": tokens[name][0],  # greedy: the same tokens every repeat
        "seconds_per_batch": spread(batch[name]),
        "seconds_to_first_tokens": spread(first[name]),
        "decode_tokens_per_second": spread(rate[name]),
        "timing": "one batch of token ids, one warm-up run, which computes the prompt pass; each timed run decodes "
                  "from a copy of it (seconds_to_first_tokens: the copy and the first tokens' head, no prompt pass); "
                  "decode tokens (all but each row's first) over the batch's time after its first tokens (one clock: "
                  "its mark once the engine has read the first tokens)",
        "reference": None,
    } for name, (engine, _) in runs.items()}


def rotated(names: list[str], turn: int) -> list[str]:
    """`names` rotated by `turn` places: over the turns each takes every place in the order, so none always
    runs first (after the others' caches, or on a clock that speeds up) or always far from another. For two
    names: in order on even turns, reversed on odd ones."""
    shift = turn % len(names)
    return names[shift:] + names[:shift]


@dataclass
class _Timed:
    """One method's batch-1 runs: decode-step seconds per prompt (one per repeat; none when it stopped at its
    first token), and per run its whole time, time to first token and tokens; its traces from the first repeat."""

    decode: list[list[float]]
    speculates: bool = False  # a spec-* method: its records keep each run's drafts and acceptances
    per_sample: list[float] = field(default_factory=list)
    per_token: list[float] = field(default_factory=list)
    first_token: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)

    def add(self, prompt: int, repeat: int, ids: list[int], seconds: float, first: float, out) -> None:
        n = len(out.token_ids)
        if n > 1:
            self.decode[prompt].append((seconds - first) / (n - 1))
        self.per_sample.append(seconds)
        self.per_token.append(seconds / n)
        self.first_token.append(first)
        self.tokens.append(n)
        if repeat == 0:  # greedy decoding: every repeat generates the same tokens
            self.records.append({"prompt_tokens": len(ids), "layers_executed": out.exit_layers})
            if self.speculates:
                self.records[-1]["speculation"] = {"drafted": out.drafted, "accepted": out.accepted}


def time_batch1(runs: dict[str, Callable[..., object]], prompts: list[list[int]], warmup: int, repeats: int,
                clock: Clock, speculating: Iterable[str] = ()) -> dict[str, _Timed]:
    """Every method of `runs` at batch 1, keyed alike: `warmup` warm-up prompts each, then for every repeat and
    prompt one timed run of each, the order rotating (`rotated`, turn = repeat + prompt, so a prompt's order
    changes from one repeat to the next)."""
    for i in range(warmup):
        for run in runs.values():
            run(prompts[i % len(prompts)])
    timed = {name: _Timed(decode=[[] for _ in prompts], speculates=name in speculating) for name in runs}
    for repeat in tqdm(range(repeats), desc=f"latency {len(runs)} methods", unit="repeat"):
        for i, ids in enumerate(prompts):
            for name in rotated(list(runs), repeat + i):
                seconds, (first,), out = clock.run(lambda mark, run=runs[name], ids=ids: run(ids, on_first_token=mark))
                timed[name].add(i, repeat, ids, seconds, first, out)
    return timed


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
    """`measure_latency` for several methods of one backbone in one job (a latency sweep): the start-up,
    the backbone load and the warm-up of `full` (the speedups' reference: the same spec with the full
    model) are shared. The methods and `full` take turns (`time_batch1`, `measure_throughput`): each
    (repeat, prompt) runs `full` once beside every method, and every method's file pairs its runs with
    those (`reference`, the same runs in each file of the job)."""
    if len(specs) != len(out_paths):
        raise ValueError(f"{len(specs)} decode specs but {len(out_paths)} output files")
    *decoders, full = Decoder.load_all([*specs, replace(specs[0], method=parse_method("full"))], backbone_dir,
                                       classifiers)
    task, samples = load_samples(task_spec)
    tokenizer = full.backbone.tokenizer  # one backbone for all: the prompts are tokenised once
    prompts = [tokenizer(s.prompt).input_ids for s in samples[: settings["prompts"]]]  # outside every timed window
    batch_ids = [tokenizer(s.prompt).input_ids for s in samples[: settings.get("throughput_batch") or 0]]
    timed = {d.spec.method.name: d for d in decoders}
    if "full" not in timed:  # every method's reference
        timed["full"] = full
    clock = Clock(full.backbone.model.device)
    max_new_tokens = specs[0].max_new_tokens
    runs = {name: d.batch1(task.stop_strings, max_new_tokens) for name, d in timed.items()}
    batch1 = time_batch1(runs, prompts, settings["warmup"], settings["repeats"], clock,
                         speculating=[name for name, d in timed.items() if d.speculation is not None])
    batched = {name: d for name, d in timed.items() if d.speculation is None}  # a spec-* method decodes at batch 1
    wanted = batch_ids and any(d.speculation is None for d in decoders)
    throughput = (measure_throughput(batched, batch_ids, task.stop_strings, max_new_tokens, settings["repeats"], clock)
                  if wanted else {})
    results = [_result(decoder, batch1, throughput, task_spec, task, prompts, settings, flops_path)
               for decoder in decoders]
    for result, out_path in zip(results, out_paths):
        write_json(out_path, result)
    return results


def _result(decoder: Decoder, batch1: dict[str, _Timed], throughput: dict[str, dict], task_spec: TaskSpec,
            task: Task, prompts: list[list[int]], settings: dict, flops_path: str | Path) -> dict:
    """One method's latency file from its job's timings (`measure_latencies`), `full`'s beside it."""
    spec = decoder.spec
    method = spec.method.name
    mine = batch1[method]
    reference = None if method == "full" else batch1["full"]
    per_decode_token = [t for times in mine.decode for t in times]
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
        "mean_tokens": float(np.mean(mine.tokens)),
        "seconds_per_sample": spread(mine.per_sample),
        "seconds_per_token": spread(mine.per_token),  # the whole sample over its tokens, prompt included
        "seconds_to_first_token": spread(mine.first_token),  # the clock's mark at the first token, same run
        "seconds_per_decode_token": spread(per_decode_token),  # what Table 3's speedup and Figure 3 use
        # per prompt, one per repeat: the speedup pairs each with `reference`'s run of the same prompt and repeat
        "decode_seconds": mine.decode,
        "reference": None,  # `full` itself: its own reference
        "decode_tokens": sum(len(r["layers_executed"]) - 1 for r in mine.records) * settings["repeats"],
        "flops_per_decode_token": decode_flops(mine.records, spec.method, read_json(flops_path)),
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
            "method": "full",
            "decode_seconds": reference.decode,
            "seconds_per_decode_token": spread([t for times in reference.decode for t in times]),
            "timing": "timed in this job after the same warm-up, one run of each (repeat, prompt) in the same round "
                      "as the method's run of it (and every other method's of the job), the order rotating",
        }
    result["throughput"] = None  # a spec-* method decodes at batch 1 only (engine/speculative.py)
    if decoder.speculation is not None:  # its acceptance on the timed prompts, and what its blocks cost here
        result["speculation"] = speculation_summary(mine.records)
        context = round(float(np.median([len(ids) for ids in prompts]))) + spec.max_new_tokens // 2
        result["block_seconds"] = {"context": context, **block_seconds(
            decoder.speculative_generator(task.stop_strings, spec.max_new_tokens).stack, context).to_dict()}
    if method in throughput:
        result["throughput"] = dict(throughput[method])
        if reference is not None:
            full = throughput["full"]
            result["throughput"]["reference"] = {
                "method": "full", "decode_tokens": full["decode_tokens"],
                "decode_tokens_per_second": full["decode_tokens_per_second"],
                "timing": "timed in this job, its batch and the method's (and every other method's of the job) "
                          "taking turns per repeat"}
        rate = result["throughput"]["decode_tokens_per_second"]
        log.info("%s %s: %s decode tokens per second at batch %d (median of %d)", spec.backbone, method,
                 f"{rate['median']:.1f}" if rate else "no", result["throughput"]["batch_size"], settings["repeats"])
    log.info("%s %s: %.2f ms to the first token, %s ms per decode step (medians of %d samples)",
             result["backbone"], method, 1000 * result["seconds_to_first_token"]["median"],
             f"{1000 * result['seconds_per_decode_token']['median']:.2f}" if per_decode_token else "no",
             len(mine.per_sample))
    return result
