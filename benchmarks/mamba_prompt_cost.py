"""The mamba exit kind's prompt cost against the most it can save in the decode steps, per task.

A stateful classifier runs over the whole prompt at every exit before the first token (its state
for the decode steps); a stateless one does not. How large is that pass next to what early exit
saves afterwards? At SmolLM2 shapes (the default profile's backbone and mamba options, four exits),
on the default profile's samples of each task:

- the FLOPs table is the flops rule's (fvcore, exact per-length counts);
- the exit trace is the oracle's (SmolLM2 decoding each sample, every token leaving at the first exit
  whose prediction equals the full model's): the most any classifier saves at full consistency, so
  the decode savings here are an upper bound and the ratio a lower bound;
- the cost ledger prices that trace as `ee-mamba` (prompt pass at every exit, a step at every exit
  per decode token) and as `ee-calm` (stateless) for comparison.

    python benchmarks/mamba_prompt_cost.py        # about 5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
from pathlib import Path
from statistics import fmean

import torch

from dynamax_bench.backbones.prepare import prepare_backbone
from dynamax_bench.config import REPO_ROOT
from dynamax_bench.costs.flops import flops_table
from dynamax_bench.costs.ledger import cell_flops
from dynamax_bench.costs.lengths import LengthModel
from dynamax_bench.files import read_json, write_json
from dynamax_bench.generation.decoder import Decoder
from dynamax_bench.generation.tasks import load_samples
from dynamax_bench.profile_checks import load_profile
from dynamax_bench.provenance import machine_description
from dynamax_bench.spec import decode_spec, parse_method, task_spec


def oracle_records(config: dict, backbone_dir: Path, task: str) -> list[dict]:
    spec = task_spec(config, task)
    decoder = Decoder.load(decode_spec(config, "smollm2", task, "oracle"), backbone_dir)
    handle, samples = load_samples(spec)
    generations = decoder.generate([s.prompt for s in samples], handle.stop_strings)
    return [{"id": s.id, "prompt_tokens": len(g.prompt_ids), "layers_executed": g.exit_layers}
            for s, g in zip(samples, generations)]


def summary(records: list[dict], table: dict) -> dict:
    mamba = cell_flops(records, parse_method("ee-mamba-copy-t0.9"), table)
    calm = cell_flops(records, parse_method("ee-calm-copy-t0.9"), table)
    n = len(records)
    prompt_pass = (mamba["prompt"]["executed"] - mamba["prompt"]["full"]) / n
    decode_saved = (mamba["decode"]["full"] - mamba["decode"]["executed"]) / n
    return {
        "samples": n,
        "mean_prompt_tokens": fmean(r["prompt_tokens"] for r in records),
        "mean_generated_tokens": fmean(len(r["layers_executed"]) for r in records),
        "mean_oracle_exit": fmean(e for r in records for e in r["layers_executed"][1:]) if mamba["decode"]["tokens"] else None,
        "mamba_prompt_pass_per_sample": prompt_pass,
        "mamba_decode_saved_per_sample": decode_saved,
        "prompt_pass_over_decode_saved": prompt_pass / decode_saved if decode_saved > 0 else None,
        "prompt_pass_over_full_prompt": prompt_pass / (mamba["prompt"]["full"] / n),
        "mamba": {k: mamba[k] for k in ("savings", "decode_savings")},
        "calm": {k: calm[k] for k in ("savings", "decode_savings")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resources/backbones/smollm2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/mamba_prompt_cost.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_profile(REPO_ROOT / "config" / "default.yaml")
    backbone_dir = Path(args.backbone)
    if not backbone_dir.exists():
        prepare_backbone("smollm2", config["backbones"]["smollm2"], backbone_dir, seed=config["seed"], offline=True)
    table_path = Path(args.out).with_name("mamba_prompt_cost.flops.json")
    if not table_path.exists():
        flops_table(backbone_dir, table_path, context_length=config["flops"]["context_length"], kinds=["calm", "mamba"],
                    options=config["classifiers"]["options"], exits=config["backbones"]["smollm2"]["exits"])
    table = read_json(table_path)
    prefill = LengthModel.from_dict(table["exit_methods"]["mamba"]["prefill"])
    per_token = prefill(2 * prefill.chunk) - prefill(prefill.chunk)  # linear part: one more chunk's tokens
    result = {
        "backbone": "smollm2 (SmolLM2-135M-Instruct, 30 layers, exits " + str(table["exit_positions"]) + ")",
        "mamba_options": config["classifiers"]["options"]["mamba"],
        "unit": table["unit"],
        "mamba_step_per_exit": table["exit_methods"]["mamba"]["flops"],
        "mamba_prompt_pass_one_exit": {str(t): prefill(t) for t in (16, 90, 256, 257, 512)},
        "mamba_prompt_pass_per_token_4_exits": {"linear_term": 4 * float(prefill.coefficients[1]),
                                                "with_chunk_work": 4 * per_token / prefill.chunk},
        "layer_decode_at_256": table["blocks"]["layer_decode"]["flops"],
        "tasks": {task: summary(oracle_records(config, backbone_dir, task), table) for task in config["tasks"]},
        "machine": machine_description(),
    }
    write_json(args.out, result)
    print(result)


if __name__ == "__main__":
    main()
