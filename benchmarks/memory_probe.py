"""The memory probe behind tests/test_memory.py and benchmarks/oracle_memory.py: a wide random
Mistral whose oracle store is large at little compute, a corpus generator, and each stage run in a
fresh process that reports its peak resident set (ru_maxrss).

A wide 4-layer Mistral (width 512) on a 64-word vocabulary makes a store of 6 KiB per token
(3 exits x 512 x float32).
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
from pathlib import Path

from dynamax_bench.config import REPO_ROOT

WORDS = [f"w{i}" for i in range(61)]
SHARD_MB = 8
SETTINGS = {"epochs": 1, "batch_size": 8, "learning_rate": 1e-3, "weight_decay": 0.0, "balance_classes": True,
            "exit_weights": "decaying", "share_parameters": False, "validation_fraction": 0.1, "test_fraction": 0.1,
            "top_k": {"candidates": [1, 3], "probe": "calm"}}


def wide_backbone(root: Path) -> Path:
    """A seeded random MistralForCausalLM, width 512, with a word-level tokenizer of 64 entries."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast

    from dynamax_bench.backbones.prepare import prepare_backbone

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                        pad_token="</s>")
    torch.manual_seed(0)
    config = MistralConfig(vocab_size=len(vocab), hidden_size=512, intermediate_size=64, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=1, head_dim=128, max_position_embeddings=512,
                           sliding_window=None, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    model_dir = root / "wide_model"
    MistralForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    spec = {"family": "transformer", "label": "wide random Mistral (memory test)", "source": {"kind": "local", "path": str(model_dir)}}
    prepare_backbone("wide", spec, root / "wide", seed=0, offline=True)
    return root / "wide"


def write_corpus(path: Path, documents: int) -> None:
    from dynamax_bench.files import write_jsonl

    rng = random.Random(documents)
    write_jsonl(path, [{"id": str(i), "topic": f"t{i % 20}", "text": " ".join(rng.choices(WORDS, k=250))}
                       for i in range(documents)])


def child(stage: str, root: str, documents: int) -> None:
    """Run one stage in this (fresh) process and print its peak RSS in MiB as JSON."""
    import torch

    torch.set_num_threads(1)
    root_path, tag = Path(root), f"n{documents}"
    from dynamax_bench.classifiers.distill import distill, select_top_k
    from dynamax_bench.classifiers.oracle import extract_oracle

    oracle, selection = root_path / f"oracle-{tag}", root_path / f"top_k-{tag}.json"
    if stage == "extract_oracle":
        extract_oracle(root_path / "wide", root_path / f"corpus-{tag}.jsonl", oracle, exits={"positions": [1, 2, 3]},
                       max_length=256, shard_mb=SHARD_MB)
    elif stage == "select_top_k":
        select_top_k(oracle, selection, probe="calm", options={}, settings=SETTINGS, thresholds=[0.9], seed=0)
    else:
        distill(oracle, selection, "calm", root_path / f"calm-{tag}.safetensors", options={},
                settings={k: v for k, v in SETTINGS.items() if k != "top_k"}, thresholds=[0.9], seed=0)
    print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def peak_mib(stage: str, root: Path, documents: int) -> float:
    """Peak RSS in MiB of one stage run in a fresh process."""
    # A fixed malloc mmap threshold: freed batch-sized buffers go back to the system instead of
    # staying in glibc's heap, so the peak measures what the code holds, not the allocator's cache.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
           "MALLOC_MMAP_THRESHOLD_": "131072"}
    code = f"from benchmarks.memory_probe import child; child({stage!r}, {str(root)!r}, {documents})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{stage} at {documents} documents failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"]
