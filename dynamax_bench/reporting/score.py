"""The `score` rule: task metrics, consistency with `full`, and layer statistics of one cell."""

from __future__ import annotations

from pathlib import Path
from statistics import fmean

from dynamax_bench.costs.ledger import cell_flops
from dynamax_bench.files import read_json, write_json
from dynamax_bench.backbones.meta import read_backbone_meta
from dynamax_bench.provenance import provenance
from dynamax_bench.generation.generate import read_generations
from dynamax_bench.generation.tasks import load_samples
from dynamax_bench.spec import DecodeSpec, TaskSpec

# An output loops when one token n-gram occurs at least LOOP_MIN_COUNT times in it.
LOOP_NGRAM = 4
LOOP_MIN_COUNT = 3


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


def loops(tokens: list[int], n: int = LOOP_NGRAM, min_count: int = LOOP_MIN_COUNT) -> bool:
    """Whether a generation repeats one token n-gram `min_count` times: the loop that greedy decoding
    falls into, which low exit thresholds are known to cause."""
    counts: dict[tuple[int, ...], int] = {}
    for i in range(len(tokens) - n + 1):
        gram = tuple(tokens[i:i + n])
        counts[gram] = counts.get(gram, 0) + 1
        if counts[gram] >= min_count:
            return True
    return False


def degeneration(records: list[dict]) -> dict[str, float | int]:
    """Share of outputs that loop, with the definition recorded beside it."""
    return {
        "loop_rate": fmean(float(loops(r["token_ids"])) for r in records),
        "ngram": LOOP_NGRAM,
        "min_count": LOOP_MIN_COUNT,
    }


def check_aligned(records: list[dict], full: list[dict], what: str) -> None:
    ids, full_ids = [r["id"] for r in records], [f["id"] for f in full]
    if ids != full_ids:
        raise ValueError(f"{what}: sample ids differ from the full model's generations; rerun both with one config")


def score_cell(
    task_spec: TaskSpec,
    generations: str | Path,
    full_generations: str | Path,
    backbone_dir: str | Path,
    flops: str | Path,
    out_path: str | Path,
    profile: str,
) -> dict:
    """Score one cell; `flops` is the backbone's block table (rule flops) for the savings."""
    meta = read_backbone_meta(backbone_dir)
    header, records = read_generations(generations)
    _, full = read_generations(full_generations)
    check_aligned(records, full, str(generations))
    task, samples = load_samples(task_spec)
    check_aligned(records, [{"id": s.id} for s in samples], str(generations))
    spec = DecodeSpec.from_dict(header["decode_spec"])
    per_sample = [task.score_one(sample, record["output"]) for sample, record in zip(samples, records)]
    exits = [layer for record in records for layer in record["exit_layers"]]
    cell = {
        "backbone": meta["name"],
        "backbone_label": meta["label"],
        "task": task_spec.name,
        "method": spec.method.name,
        "spec": spec.to_dict(),
        "task_spec": task_spec.to_dict(),
        "metrics": {name: fmean(s[name] for s in per_sample) for name in task.metrics},
        "consistency": consistency(records, full),
        "degeneration": degeneration(records),
        "layers": {
            "num_layers": meta["num_layers"],
            "exit_positions": header["exit_layers"],
            "mean_executed": fmean(exits),
            "histogram": {str(layer): exits.count(layer) for layer in sorted(set(exits))},
        },
        "flops": cell_flops(records, spec.method, read_json(flops)),
        "n_samples": len(records),
        "n_tokens": len(exits),
        "provenance": provenance(profile, {"decode_spec": spec.to_dict(), "task_spec": task_spec.to_dict()}),
    }
    write_json(out_path, cell)
    return cell
