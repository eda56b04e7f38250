"""SmolLM2 `full` on the real dataset samples beside the checkout (../shared/data): the scores the
embedded sets stand in for, with sample counts and wall time.

    python benchmarks/real_samples.py --backbone resources/backbones/smollm2 --out benchmarks/results/real_samples.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from statistics import fmean

import torch

from dynamax_bench.config import REPO_ROOT
from dynamax_bench.lmeval.model import DynamaxLM, build_requests
from dynamax_bench.provenance import machine_description
from dynamax_bench.generation.tasks import get_task

SHARED = REPO_ROOT.parent / "shared" / "data"
SETS = {
    "triviaqa": ({"kind": "local", "path": str(SHARED / "triviaqa_rc_nocontext.validation.jsonl")}, 5, 24),
    "truthfulqa": ({"kind": "local", "path": str(SHARED / "truthfulqa_generation.validation.jsonl")}, 0, 32),
    "triviaqa (embedded)": ({"kind": "embedded"}, 5, 24),
    "truthfulqa (embedded)": ({"kind": "embedded"}, 0, 32),
    "coqa (embedded, every turn)": ({"kind": "embedded"}, 0, 16),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = DynamaxLM(backbone=str(args.backbone), method="full", device="cpu")
    report = {"backbone": str(args.backbone), "machine": machine_description(), "threads": args.threads, "sets": {}}
    for name, (source, shots, max_new) in SETS.items():
        task_name = name.split()[0]
        task = get_task(task_name, turns="all") if task_name == "coqa" else get_task(task_name)
        # few-shot examples from the embedded pool (the real sample has no train split here)
        samples = task.load(source, None, shots, {"kind": "embedded", "split": "train"} if shots else None)
        started = time.perf_counter()
        outputs = lm.generate_until(build_requests(task, samples, max_new))
        seconds = time.perf_counter() - started
        scores = [task.score_one(s, o) for s, o in zip(samples, outputs)]
        report["sets"][name] = {"samples": len(samples), "seconds": round(seconds, 1), "num_fewshot": shots,
                                "max_new_tokens": max_new,
                                "metrics": {m: fmean(s[m] for s in scores) for m in task.metrics}}
        print(name, json.dumps(report["sets"][name]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
