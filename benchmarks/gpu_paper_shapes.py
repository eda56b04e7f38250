"""GPU check and timing at the paper's shapes, without the hub: random weights, real layer code.

1. Exactness on the device (the tiny smoke backbones, float32): the engine's `full` path and a
   never-exiting rule under every state policy reproduce `model.generate(do_sample=False)` token
   for token; the batched engine (4 prompts of mixed lengths, shared-prefix cache on) reproduces
   the batch-1 engine for `full` and for seeded, calibrated `calm` and `mamba` classifiers under
   every policy, with rows exiting at different layers in one step (`verify`, every row).
2. Batch-1 latency (CUDA events, median of repeats after a warm-up) at Mistral-7B-v0.1's and
   Mamba-Codestral-7B-v0.1's configurations in bfloat16 with random weights (latency depends on
   shapes, not on weight values; the vocabulary is the SmolLM2 tokenizer's 49,152 so the smoke
   tokenizer can drive it): `model.generate`; the reference path's `full`, static pruning to L/2
   and exit at L/2 under each state policy; the batched engine at batch 1 (its static cache) for
   `full`, exit at L/2 and calibrated `calm` and `mamba` classifiers.
3. Decode throughput at each `--batch-sizes` (prompts of mixed lengths, 32 new tokens, EOS off):
   `model.generate` (left padding), the batched engine's `full`, exit at L/2 for every row, and
   calibrated `calm` and `mamba` classifiers (about half of the decisions exit, so rows leave at
   different layers), state policy `copy` (Transformer) or `skip` (Mamba-2). Per method: tokens
   per second, mean exit layer, the engine's host reads per decode step and the CUDA
   synchronisations per step that `torch.cuda.set_sync_debug_mode` reports (a separate run). At
   the first batch size every row of `full`, `ee-calm` and `ee-mamba` is re-decoded at batch 1
   (`verify`): in bfloat16 the rows and tokens the batch shape changed, each with the near tie it
   sat on.
4. `--float32`: the Transformer at float32 (the dtype the batched engine is exact in, see
   docs/engine.md) at the first batch size: throughput of `full` and `ee-calm`, and every row of
   `full`, `ee-calm` and `ee-mamba` re-decoded at batch 1: the float32 near-tie bounds, measured
   on CPUs, hold on this GPU where no row differs outside a recorded near tie.

The Mamba-2 mixer runs whatever transformers bound at import (backbones/kernels.py): the fused
mamba-ssm / causal-conv1d kernels when they import, recorded under "mamba2_bindings";
`--require-kernels` stops before timing Mamba-2 when any function would run the PyTorch fallback.
`--no-kernels` hides both packages before transformers is imported, so the same code runs on
transformers' PyTorch path: the kernels-against-no-kernels comparison is two runs of this script.

    python benchmarks/gpu_paper_shapes.py --tiny benchmarks/out/backbones --float32 \
        --out benchmarks/results/gpu_paper_shapes.json
    python benchmarks/gpu_paper_shapes.py --tiny benchmarks/out/backbones --no-kernels --families mamba2 \
        --no-verify --out benchmarks/results/gpu_paper_shapes_no_kernels.json

`--shapes tiny --device cpu` runs every step at small shapes: a check of this script, not a number.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import torch

KERNEL_PACKAGES = ("mamba_ssm", "causal_conv1d")
QA = "Question: Which river flows through Paris?\nAnswer: The Seine\n\n"
QUESTIONS = ["What is the capital of Italy?", "Who wrote Hamlet?", "How many legs does a spider have?",
             "What is the largest ocean on Earth?"]
PROMPT = QA * 12 + f"Question: {QUESTIONS[0]}\nAnswer:"
VERIFIED_ROWS = 8  # rows of a batch run re-decoded at batch 1 (each costs a batch-1 generation)

def batch_prompts(count: int) -> list[str]:
    """Prompts of mixed lengths: 4 to 19 few-shot blocks, cycling."""
    return [QA * (4 + k % 16) + f"Question: {QUESTIONS[k % 4]}\nAnswer:" for k in range(count)]


def block_kernels() -> None:
    """Make `import mamba_ssm` / `import causal_conv1d` fail, so transformers binds its torch path."""
    if any(name in sys.modules for name in ("transformers", *KERNEL_PACKAGES)):
        raise RuntimeError("--no-kernels must take effect before transformers is imported")
    for name in KERNEL_PACKAGES:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system reads None as "not importable"


def versions() -> dict:
    out = {"torch": torch.__version__, "cuda": torch.version.cuda}
    for dist in ("transformers", "mamba-ssm", "causal-conv1d", "triton"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    """Seconds of one call (CUDA events on a GPU, perf_counter on the CPU) and its result."""
    if device.type != "cuda":
        start = time.perf_counter()
        result = fn()
        return time.perf_counter() - start, result
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    result = fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000.0, result


def repeat(fn: Callable[[], object], repeats: int, device: torch.device) -> tuple[list[float], object]:
    fn()  # warm-up (and Triton's compilation, where a kernel is new)
    times, result = [], None
    for _ in range(repeats):
        seconds, result = timed(fn, device)
        times.append(seconds)
    return times, result


def calibrated(kinds: tuple[str, ...], reference, device: torch.device) -> dict:
    """Seeded untrained classifiers of each kind, standardised and calibrated on this model's own
    exit states so that about half of the decisions exit (created on `device`, float32)."""
    from dynamax_bench.classifiers.untrained import untrained_rule

    prompts = [QA * 2 + f"Question: {q}\nAnswer:" for q in QUESTIONS]
    with torch.device(device):
        return {kind: untrained_rule(kind, reference, prompts, exit_share=0.5) for kind in kinds}


def mean_decode_exit_layer(generations: list) -> float | None:
    """Mean layer a decode step's token left at (each generation's first token is the prompt's)."""
    layers = [layer for g in generations for layer in g.exit_layers[1:]]
    return statistics.mean(layers) if layers else None


def agreement(reference, prompts: list, strategy, generations: list) -> dict:
    from dynamax_bench.engine import verify

    result = verify(reference, prompts, strategy, generations, all_rows=True).as_dict()
    result["mean_decode_exit_layer"] = mean_decode_exit_layer(generations)
    return result


def equivalence(folder: Path, device: torch.device) -> dict:
    """The engine against model.generate, and the batched engine against the batch-1 engine."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dynamax_bench.engine import BatchedGenerator, ConstantRule, EarlyExitGenerator, Strategy, layer_stack

    model = AutoModelForCausalLM.from_pretrained(folder).to(device).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    exits = [4, 5, 6, 7]
    generator = EarlyExitGenerator(model, tok, exit_layers=exits, max_new_tokens=16)
    ids = tok(PROMPT, return_tensors="pt").input_ids.to(device)
    with torch.no_grad():
        ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False,
                             pad_token_id=tok.eos_token_id)[0, ids.shape[1]:].tolist()
    eos = set([model.generation_config.eos_token_id] if isinstance(model.generation_config.eos_token_id, int) else [])
    ref = ref[: next((i + 1 for i, t in enumerate(ref) if t in eos), len(ref))]
    policies = layer_stack(model).policies
    result: dict = {"engine_equals_generate": {"full": generator.generate(PROMPT, Strategy.full()).token_ids == ref}}
    for policy in policies:
        out = generator.generate(PROMPT, Strategy.early_exit(ConstantRule(0.0), policy))
        result["engine_equals_generate"][f"never-exit-{policy}"] = out.token_ids == ref
    prompts = batch_prompts(4)[::-1]  # mixed lengths, longest first
    batched = BatchedGenerator(model, tok, exit_layers=exits, max_new_tokens=16, batch_size=4, share_prefixes=True)
    strategies = {"full": Strategy.full()}
    for kind, rule in calibrated(("calm", "mamba"), generator, device).items():
        for policy in policies:
            strategies[f"ee-{kind}-{policy}"] = Strategy.early_exit(rule, policy)
    result["batch_4_against_batch_1"] = {
        name: agreement(generator, prompts, strategy, batched.generate(prompts, strategy))
        for name, strategy in strategies.items()}
    return result


def paper_shapes(shapes: str) -> dict:
    """{name: (model class, config)} at the paper's shapes, or small ones (`tiny`) to check the script."""
    from transformers import Mamba2Config, Mamba2ForCausalLM, MistralConfig, MistralForCausalLM

    if shapes == "paper":
        return {
            "Mistral-7B-v0.1 shapes": (MistralForCausalLM, MistralConfig(
                hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=8, vocab_size=49152, max_position_embeddings=32768, sliding_window=4096)),
            "Mamba-Codestral-7B-v0.1 shapes": (Mamba2ForCausalLM, Mamba2Config(
                hidden_size=4096, num_hidden_layers=64, expand=2, head_dim=64, num_heads=128, n_groups=8,
                state_size=128, conv_kernel=4, chunk_size=256, vocab_size=49152, tie_word_embeddings=False)),
        }
    return {
        "Mistral tiny shapes": (MistralForCausalLM, MistralConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=49152, max_position_embeddings=4096, sliding_window=None)),
        "Mamba-2 tiny shapes": (Mamba2ForCausalLM, Mamba2Config(
            hidden_size=64, num_hidden_layers=8, expand=2, head_dim=16, num_heads=8, n_groups=1, state_size=16,
            conv_kernel=4, chunk_size=64, vocab_size=49152, tie_word_embeddings=False)),
    }


def exit_layers(num_layers: int) -> list[int]:
    return [num_layers // 2, 5 * num_layers // 8, 3 * num_layers // 4, 7 * num_layers // 8]


def engine_strategies(model: torch.nn.Module, rules: dict) -> dict:
    """`full`, exit at the first exit (L/2) for every row, and the calibrated classifiers, under the
    family's first policy (copy, skip)."""
    from dynamax_bench.engine import ConstantRule, Strategy, layer_stack

    policy = layer_stack(model).policies[0]
    first = exit_layers(model.config.num_hidden_layers)[0]
    return {"full": Strategy.full(), f"exit at {first} ({policy})": Strategy.early_exit(ConstantRule(1.0), policy),
            **{f"ee-{kind}-{policy}": Strategy.early_exit(rule, policy) for kind, rule in rules.items()}}


def latency(model: torch.nn.Module, tok, new_tokens: int, repeats: int, rules: dict) -> dict:
    """Milliseconds per generated token at batch 1 (the paper's setting): the reference path and the
    batched engine at batch 1 (its static cache, its decisions on the device)."""
    from dynamax_bench.engine import BatchedGenerator, ConstantRule, EarlyExitGenerator, Strategy, layer_stack

    num_layers = model.config.num_hidden_layers
    exits = exit_layers(num_layers)
    first_exit = exits[0]
    reference = EarlyExitGenerator(model, tok, exit_layers=[first_exit], max_new_tokens=new_tokens, eos_token_ids=[])
    batched = BatchedGenerator(model, tok, exit_layers=exits, max_new_tokens=new_tokens, eos_token_ids=[],
                               batch_size=1, share_prefixes=False)
    ids = tok(PROMPT, return_tensors="pt").input_ids.to(model.device)
    prompt = ids[0].tolist()
    runs = {
        "model.generate": lambda: model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                                 min_new_tokens=new_tokens, do_sample=False, pad_token_id=0),
        "reference full": lambda: reference.generate(PROMPT, Strategy.full()),
        f"reference prune{num_layers - first_exit}": lambda: reference.generate(
            PROMPT, Strategy.prune(num_layers, num_layers - first_exit)),
    }
    for policy in layer_stack(model).policies:
        runs[f"reference exit at {first_exit} ({policy})"] = lambda p=policy: reference.generate(
            PROMPT, Strategy.early_exit(ConstantRule(1.0), p))
    for name, strategy in engine_strategies(model, rules).items():
        runs[f"engine {name}"] = lambda s=strategy: batched.generate([prompt], s)
    out: dict = {"prompt_tokens": ids.shape[1], "new_tokens": new_tokens, "repeats": repeats}
    with torch.inference_mode():
        for name, fn in runs.items():
            times, result = repeat(fn, repeats, model.device)
            out[name] = {"ms_per_token_median": 1000 * statistics.median(times) / new_tokens,
                         "ms_per_token_all": [round(1000 * t / new_tokens, 3) for t in times]}
            if name.startswith("engine "):
                out[name]["mean_decode_exit_layer"] = mean_decode_exit_layer(result)
    return out


def left_padded(prompts: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    return ids, mask


def synchronisations(engine, prompts: list, strategy) -> dict:
    """One run counted: the engine's host reads per decode step, and on CUDA the synchronisations
    `torch.cuda.set_sync_debug_mode` warns of (prompt pass included, over the decode steps)."""
    engine.host_reads = engine.steps = 0
    if engine.device.type != "cuda":
        engine.generate(prompts, strategy)
        return {"host_reads_per_step": engine.host_reads / max(engine.steps, 1)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            engine.generate(prompts, strategy)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchronizing" in str(w.message) for w in caught)
    return {"host_reads_per_step": engine.host_reads / max(engine.steps, 1),
            "cuda_syncs_per_step": syncs / max(engine.steps, 1)}


def throughput(model: torch.nn.Module, tok, new_tokens: int, repeats: int, batch_size: int, rules: dict,
               verify_rows: bool, names: tuple[str, ...] | None = None) -> dict:
    """Generated tokens per second at `batch_size` rows, every row making `new_tokens` tokens; with
    `verify_rows`, `full` and the classifiers' rows re-decoded at batch 1 and compared."""
    from dynamax_bench.engine import BatchedGenerator, EarlyExitGenerator

    device = model.device
    exits = exit_layers(model.config.num_hidden_layers)
    prompts = [tok(p).input_ids for p in batch_prompts(batch_size)]
    reference = EarlyExitGenerator(model, tok, exit_layers=exits, max_new_tokens=new_tokens, eos_token_ids=[])
    engine = BatchedGenerator(model, tok, exit_layers=exits, max_new_tokens=new_tokens, eos_token_ids=[],
                              batch_size=batch_size, share_prefixes=True)
    strategies = {name: s for name, s in engine_strategies(model, rules).items() if names is None or name in names}
    out: dict = {"batch_size": batch_size, "rows": len(prompts), "new_tokens": new_tokens, "repeats": repeats,
                 "dtype": str(model.dtype), "exit_layers": exits, "prompt_tokens": [len(p) for p in prompts],
                 "thresholds": {kind: rule.threshold for kind, rule in rules.items()}}
    with torch.inference_mode():
        if names is None:
            ids, mask = left_padded(prompts, device)
            times, _ = repeat(lambda: model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens,
                                                     min_new_tokens=new_tokens, do_sample=False, pad_token_id=0),
                              repeats, device)
            out["model.generate"] = {"tokens_per_s_median": len(prompts) * new_tokens / statistics.median(times),
                                     "seconds_all": [round(t, 4) for t in times]}
        for name, strategy in strategies.items():
            times, generations = repeat(lambda s=strategy: engine.generate(prompts, s), repeats, device)
            count = sum(len(g.token_ids) for g in generations)
            out[f"engine {name}"] = {"tokens_per_s_median": count / statistics.median(times),
                                     "seconds_all": [round(t, 4) for t in times],
                                     "mean_decode_exit_layer": mean_decode_exit_layer(generations),
                                     **synchronisations(engine, prompts, strategy)}
            if verify_rows and (name == "full" or name.startswith("ee-")):
                out[f"engine {name}"]["against_batch_1"] = agreement(reference, prompts, strategy, generations)
    return out


def attempt(errors: list[str], label: str, fn: Callable[[], dict]) -> dict:
    """One step's result, or its error recorded: a device run is scarce, so a failing step must
    not cost the others (the script still exits non-zero)."""
    try:
        return fn()
    except Exception:
        errors.append(label)
        return {"error": traceback.format_exc(limit=8)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", type=Path, required=True, help="folder with tiny_mistral/ and tiny_mamba2/")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[16, 64], help="none: batch 1 only")
    parser.add_argument("--families", nargs="+", choices=("transformer", "mamba2"), default=["transformer", "mamba2"])
    parser.add_argument("--no-kernels", action="store_true", help="hide mamba-ssm and causal-conv1d from transformers")
    parser.add_argument("--require-kernels", action="store_true",
                        help="fail before timing Mamba-2 where a mixer function would run the PyTorch fallback")
    parser.add_argument("--no-verify", action="store_true", help="skip the batch-1 re-decode of the batch runs")
    parser.add_argument("--float32", action="store_true", help="also check the Transformer at float32 (step 4)")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16", help="of the paper-shape models")
    parser.add_argument("--shapes", choices=("paper", "tiny"), default="paper")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if args.no_kernels:
        block_kernels()
    from transformers import AutoTokenizer

    from dynamax_bench.backbones.kernels import KernelsMissing, check_mamba2_kernels, mamba2_bindings
    from dynamax_bench.engine import EarlyExitGenerator

    device = torch.device(args.device)
    report: dict = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                    "versions": versions(), "kernels_hidden": args.no_kernels, "shapes": args.shapes,
                    "timing": "CUDA events around each call (perf_counter on the CPU), median of repeats after one warm-up",
                    "mamba2_bindings": [{"function": b.function, "implementation": b.implementation, "fused": b.fused}
                                        for b in mamba2_bindings()],
                    "equivalence": {}, "models": {}}
    errors: list[str] = []
    tiny = {"transformer": "tiny_mistral", "mamba2": "tiny_mamba2"}
    for family in args.families:
        report["equivalence"][tiny[family]] = attempt(errors, f"equivalence {tiny[family]}",
                                                      lambda f=family: equivalence(args.tiny / tiny[f], device))
        print(tiny[family], json.dumps(report["equivalence"][tiny[family]])[:2000], flush=True)
    tok = AutoTokenizer.from_pretrained(args.tiny / "tiny_mistral")
    models = dict(zip(("transformer", "mamba2"), paper_shapes(args.shapes).items()))
    dtype = getattr(torch, args.dtype)
    runs = [(family, dtype) for family in args.families]
    if args.float32 and "transformer" in args.families and dtype != torch.float32:
        runs.append(("transformer", torch.float32))
    for family, run_dtype in runs:  # in the order asked, the float32 check last
        name, (cls, config) = models[family]
        label = name if run_dtype == dtype else f"{name} float32"
        torch.manual_seed(0)
        with torch.device(device):
            model = cls(config).to(run_dtype).eval()
        entry: dict = {"dtype": str(model.dtype), "weights": "random (seed 0)"}
        if family == "mamba2":
            try:
                check_mamba2_kernels("required", device, [model])
                entry["mamba_kernels_required_check"] = "passes"
            except KernelsMissing as err:
                entry["mamba_kernels_required_check"] = f"refuses: {err}"
                if args.require_kernels:
                    errors.append(f"{name}: kernels required")
                    report["models"][label] = entry
                    break
        reference = EarlyExitGenerator(model, tok, exit_layers=exit_layers(config.num_hidden_layers), max_new_tokens=16)
        rules = attempt(errors, f"{label} calibration", lambda: calibrated(("calm", "mamba"), reference, device))
        if "error" in rules:
            entry["calibration"] = rules
        else:
            if run_dtype == dtype:
                entry["batch 1"] = attempt(errors, f"{label} batch 1",
                                           lambda: latency(model, tok, args.new_tokens, args.repeats, rules))
                print(label, "batch 1", json.dumps(entry["batch 1"]), flush=True)
            sizes = args.batch_sizes if run_dtype == dtype else args.batch_sizes[:1]
            for k, size in enumerate(sizes):
                names = None if run_dtype == dtype else ("full", "ee-calm-copy", "ee-mamba-copy")
                entry[f"batch {size}"] = attempt(errors, f"{label} batch {size}", lambda: throughput(
                    model, tok, args.new_tokens, args.repeats, size, rules, k == 0 and not args.no_verify, names))
                print(label, f"batch {size}", json.dumps(entry[f"batch {size}"])[:3000], flush=True)
        report["models"][label] = entry
        args.out.write_text(json.dumps(report, indent=2))  # kept if a later model is cut off
        del model, reference
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report["errors"] = errors
    args.out.write_text(json.dumps(report, indent=2))
    if errors:
        sys.exit(f"steps that failed (their tracebacks are in {args.out}): {errors}")


if __name__ == "__main__":
    main()
