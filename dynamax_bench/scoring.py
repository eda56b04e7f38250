"""The `score` rule: task metrics, consistency with `full`, and layer statistics of one cell."""

from __future__ import annotations

from pathlib import Path
from statistics import fmean

from .config import exit_positions
from .io import read_jsonl, write_json
from .meta import read_backbone_meta
from .provenance import provenance
from .tasks import get_task


def prefix_agreement(tokens: list[int], reference: list[int]) -> float:
    """Share of the reference's tokens reproduced before the first divergence."""
    if not reference:
        return 1.0 if not tokens else 0.0
    same = 0
    for a, b in zip(tokens, reference):
        if a != b:
            break
        same += 1
    return same / len(reference)


def consistency(records: list[dict], full: list[dict]) -> dict[str, float]:
    """Agreement of a method's outputs with the full model's on the same prompts."""
    return {
        "output_match": fmean(float(r["output"] == f["output"]) for r, f in zip(records, full)),
        "token_prefix_agreement": fmean(prefix_agreement(r["token_ids"], f["token_ids"]) for r, f in zip(records, full)),
    }


def check_aligned(records: list[dict], full: list[dict], what: str) -> None:
    ids, full_ids = [r["id"] for r in records], [f["id"] for f in full]
    if ids != full_ids:
        raise ValueError(f"{what}: sample ids differ from the full model's generations; rerun both with one config")


def score_cell(
    config: dict,
    backbone_dir: str | Path,
    task_name: str,
    method_name: str,
    generations: str | Path,
    full_generations: str | Path,
    out_path: str | Path,
) -> dict:
    meta = read_backbone_meta(backbone_dir)
    records, full = read_jsonl(generations), read_jsonl(full_generations)
    check_aligned(records, full, str(generations))
    task = get_task(task_name)
    task_cfg = config["tasks"][task_name]
    samples = task.load(task_cfg["source"], task_cfg.get("limit"), task_cfg.get("num_fewshot", 0),
                        task_cfg.get("fewshot_source"))
    check_aligned(records, [{"id": s.id} for s in samples], str(generations))
    per_sample = [task.score_one(sample, record["output"]) for sample, record in zip(samples, records)]
    exits = [layer for record in records for layer in record["exit_layers"]]
    cell = {
        "backbone": meta["name"],
        "backbone_label": meta["label"],
        "task": task_name,
        "method": method_name,
        "metrics": {name: fmean(s[name] for s in per_sample) for name in task.metrics},
        "consistency": consistency(records, full),
        "layers": {
            "num_layers": meta["num_layers"],
            "exit_positions": exit_positions(config["backbones"][meta["name"]], meta["num_layers"]),
            "mean_executed": fmean(exits),
            "histogram": {str(layer): exits.count(layer) for layer in sorted(set(exits))},
        },
        "n_samples": len(records),
        "n_tokens": len(exits),
        "provenance": provenance(config),
    }
    write_json(out_path, cell)
    return cell
