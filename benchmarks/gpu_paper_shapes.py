"""GPU check and timing at the paper's shapes, without the hub: random weights, real layer code.

1. On CUDA, the engine's `full` path and a never-exiting rule under every state policy reproduce
   `model.generate(do_sample=False)` token for token (the smoke backbones, float32).
2. Per-token latency (CUDA events, median of repeats after a warm-up) of `model.generate`, the
   engine's `full`, static pruning to L/2, and early exit at the first exit position (L/2) under
   each state policy, for Mistral-7B-v0.1's and Mamba-Codestral-7B-v0.1's configurations in
   bfloat16 with random weights (latency depends on shapes, not on weight values; the vocabulary is
   the SmolLM2 tokenizer's 49,152 so the smoke tokenizer can drive it).

    python benchmarks/gpu_paper_shapes.py --tiny resources/backbones --out gpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Mamba2Config, Mamba2ForCausalLM, MistralConfig, MistralForCausalLM

from dynamax_bench.engine import ConstantRule, EarlyExitGenerator, Strategy, layer_stack

PROMPT = "Question: Which river flows through Paris?\nAnswer: The Seine\n\n" * 12 + "Question: What is the capital of Italy?\nAnswer:"


def equivalence(folder: Path, device: torch.device) -> dict:
    model = AutoModelForCausalLM.from_pretrained(folder).to(device).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    generator = EarlyExitGenerator(model, tok, exit_layers=[4, 5, 6, 7], max_new_tokens=16)
    ids = tok(PROMPT, return_tensors="pt").input_ids.to(device)
    with torch.no_grad():
        ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False,
                             pad_token_id=tok.eos_token_id)[0, ids.shape[1]:].tolist()
    eos = set([model.generation_config.eos_token_id] if isinstance(model.generation_config.eos_token_id, int) else [])
    ref = ref[: next((i + 1 for i, t in enumerate(ref) if t in eos), len(ref))]
    result = {"full": generator.generate(PROMPT, Strategy.full()).token_ids == ref}
    for policy in layer_stack(model).policies:
        out = generator.generate(PROMPT, Strategy.early_exit(ConstantRule(0.0), policy))
        result[f"never-exit-{policy}"] = out.token_ids == ref
    return result


def cuda_time(fn) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000.0


def latency(model: torch.nn.Module, tok, new_tokens: int, repeats: int) -> dict:
    num_layers = model.config.num_hidden_layers
    first_exit = num_layers // 2
    generator = EarlyExitGenerator(model, tok, exit_layers=[first_exit], max_new_tokens=new_tokens, eos_token_ids=[])
    ids = tok(PROMPT, return_tensors="pt").input_ids.to(model.device)
    runs = {
        "model.generate": lambda: model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                                 min_new_tokens=new_tokens, do_sample=False, pad_token_id=0),
        "engine full": lambda: generator.generate(PROMPT, Strategy.full()),
        f"engine prune{num_layers - first_exit}": lambda: generator.generate(
            PROMPT, Strategy.prune(num_layers, num_layers - first_exit)),
    }
    for policy in layer_stack(model).policies:
        runs[f"engine exit at {first_exit} ({policy})"] = lambda p=policy: generator.generate(
            PROMPT, Strategy.early_exit(ConstantRule(1.0), p))
    out = {"prompt_tokens": ids.shape[1], "new_tokens": new_tokens, "repeats": repeats}
    with torch.inference_mode():
        for name, fn in runs.items():
            fn()  # warm-up
            times = [cuda_time(fn) for _ in range(repeats)]
            out[name] = {"ms_per_token_median": 1000 * statistics.median(times) / new_tokens,
                         "ms_per_token_all": [round(1000 * t / new_tokens, 3) for t in times]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", type=Path, required=True, help="folder with tiny_mistral/ and tiny_mamba2/")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device("cuda")
    report = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    import transformers

    report["transformers"] = transformers.__version__
    report["equivalence"] = {name: equivalence(args.tiny / name, device) for name in ("tiny_mistral", "tiny_mamba2")}
    tok = AutoTokenizer.from_pretrained(args.tiny / "tiny_mistral")
    shapes = {
        "Mistral-7B-v0.1 shapes": (MistralForCausalLM, MistralConfig(
            hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
            num_key_value_heads=8, vocab_size=49152, max_position_embeddings=32768, sliding_window=4096)),
        "Mamba-Codestral-7B-v0.1 shapes": (Mamba2ForCausalLM, Mamba2Config(
            hidden_size=4096, num_hidden_layers=64, expand=2, head_dim=64, num_heads=128, n_groups=8,
            state_size=128, conv_kernel=4, chunk_size=256, vocab_size=49152, tie_word_embeddings=False)),
    }
    for name, (cls, config) in shapes.items():
        torch.manual_seed(0)
        with torch.device(device):
            model = cls(config).to(torch.bfloat16).eval()
        report[name] = latency(model, tok, args.new_tokens, args.repeats)
        del model
        torch.cuda.empty_cache()
        print(name, json.dumps(report[name], indent=1), flush=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report["equivalence"]))


if __name__ == "__main__":
    main()
