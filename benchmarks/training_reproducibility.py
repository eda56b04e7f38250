"""Which settings change the bits of the Mamba-2 stand-in's training (rule `train_backbone`)?

Trains the default profile's recipe for a few steps on the first documents of a run's corpus, once
per setting, each in its own process (the kernel variables are read when torch starts), and
compares with the first setting: the teacher's top-k targets (SmolLM2 inference) and the student's
weights after training (`artefacts.weights_digest`, and the largest absolute difference).
Settings stand in for other machines: another thread count, ATen's AVX2 kernels instead of AVX-512
(`ATEN_CPU_CAPABILITY`), MKL's code path (`MKL_CBWR`), oneDNN's ISA (`ONEDNN_MAX_CPU_ISA`) or oneDNN
off, and all of them at once (an AVX2-only x86 processor, as far as one machine can play one).

    python benchmarks/training_reproducibility.py --teacher resources/backbones/smollm2 \
        --corpus results/default/corpus.jsonl --out benchmarks/results/training_reproducibility.json
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dynamax_bench.config import REPO_ROOT
from dynamax_bench.files import read_json, read_jsonl, write_json, write_jsonl
from dynamax_bench.provenance import git_commit, machine_description, package_versions

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
# name -> (environment variables, training threads, oneDNN enabled)
SETTINGS: dict[str, tuple[dict[str, str], int, bool]] = {
    "baseline": ({}, 1, True),
    "baseline again": ({}, 1, True),
    "2 threads": ({}, 2, True),
    "ATen avx2": ({"ATEN_CPU_CAPABILITY": "avx2"}, 1, True),
    "MKL_CBWR=AVX2": ({"MKL_CBWR": "AVX2"}, 1, True),
    "MKL_CBWR=COMPATIBLE": ({"MKL_CBWR": "COMPATIBLE"}, 1, True),
    "oneDNN AVX2": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, 1, True),
    "oneDNN off": ({}, 1, False),
    "AVX2 processor": (AVX2, 1, True),
    "AVX2 processor again": (AVX2, 1, True),
}


def tensors_digest(path: Path, names: tuple[str, ...]) -> str:
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    digest = hashlib.sha256()
    for name in names:
        digest.update(tensors[name].numpy().tobytes())
    return digest.hexdigest()[:16]


def worker(args: argparse.Namespace) -> None:
    """One training run in this process, under the environment the parent gave it."""
    import torch

    from dynamax_bench.artefacts import weights_digest
    from dynamax_bench.backbones.train_mamba2 import TARGETS_FILE, train_distilled_backbone
    from dynamax_bench.profile_checks import load_profile
    from dynamax_bench.provenance import environment

    torch.backends.mkldnn.enabled = not args.no_mkldnn
    config = load_profile(REPO_ROOT / "config" / "default.yaml")
    spec = copy.deepcopy(config["backbones"]["mamba2"])
    spec["source"]["training"].update(steps=args.steps, warmup_steps=1, eval_every=args.steps,
                                      checkpoint_every=args.steps, threads=args.threads)
    work = Path(args.workdir)
    found: dict[str, str] = {}

    def on_step(step: int, loss: float) -> None:
        if step == 1:  # the targets file lives in the work folder until training ends
            found["targets"] = tensors_digest(work / "work" / TARGETS_FILE, ("topk_logp", "topk_ids"))

    started = time.perf_counter()
    record = train_distilled_backbone("mamba2", spec, args.teacher, args.corpus, work / "backbone", work / "work",
                                      seed=config["seed"], on_step=on_step)
    write_json(work / "result.json", {
        "targets_sha256": found["targets"], "weights_sha256": weights_digest(work / "backbone"),
        "heldout_loss": record["heldout"]["student_loss"], "seconds": round(time.perf_counter() - started, 1),
        "environment": environment(),
    })


def folder(root: Path, name: str) -> Path:
    return root / "".join(c if c.isalnum() else "_" for c in name)


def largest_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    first, second = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return max(float((first[k] - second[k]).abs().max()) for k in first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, required=True, help="the prepared SmolLM2 folder")
    parser.add_argument("--corpus", type=Path, required=True, help="a default run's corpus.jsonl")
    parser.add_argument("--documents", type=int, default=64, help="first corpus documents to train on")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--only", nargs="*", help="run these settings only (names of SETTINGS)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--no-mkldnn", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        write_jsonl(corpus, read_jsonl(args.corpus)[: args.documents])
        names = args.only or list(SETTINGS)
        for name in names:
            variables, threads, mkldnn = SETTINGS[name]
            work = folder(Path(tmp), name)
            command = [sys.executable, __file__, "--worker", name, "--workdir", str(work), "--teacher",
                       str(args.teacher), "--corpus", str(corpus), "--steps", str(args.steps), "--threads", str(threads)]
            if not mkldnn:
                command.append("--no-mkldnn")
            env = {**{k: v for k, v in os.environ.items() if k not in AVX2}, **variables}
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"setting {name!r} failed:\n{done.stderr[-3000:]}")
            result = read_json(work / "result.json")
            result["weights_max_abs_difference"] = largest_difference(folder(Path(tmp), names[0]) / "backbone",
                                                                      work / "backbone")
            results[name] = {"variables": variables, "threads": threads, "onednn": mkldnn, **result}
            print(f"{name:24s} targets {result['targets_sha256']} weights {result['weights_sha256']} "
                  f"max |diff| {result['weights_max_abs_difference']:.3g} ({result['seconds']} s)", flush=True)
    first = results[names[0]]
    report = {
        "what": f"default profile's Mamba-2 recipe, {args.steps} steps of batch 8 x 256 on the first {args.documents} "
                f"corpus documents, one process per setting, compared with '{names[0]}'",
        "settings": results,
        "same_targets_as_first": {n: r["targets_sha256"] == first["targets_sha256"] for n, r in results.items()},
        "same_weights_as_first": {n: r["weights_sha256"] == first["weights_sha256"] for n, r in results.items()},
        "machine": machine_description(),
        "commit": git_commit(),
        "versions": package_versions(),
        "note": "the machine was shared with other jobs (timings are not the point here)",
    }
    print(json.dumps({k: report[k] for k in ("same_targets_as_first", "same_weights_as_first")}, indent=1))
    if args.out:
        write_json(args.out, report)


if __name__ == "__main__":
    main()
