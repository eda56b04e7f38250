"""The `score` rule: task metrics, consistency with `full`, and layer statistics of one cell.

Every quantity is kept per sample (`per_sample`, one list per quantity in sample order, with the
sample ids, so that comparisons between cells can be paired) and summarised with its interval
(`intervals`, dynamax_bench/reporting/statistics.py); the headline values (`metrics`,
`consistency`, `degeneration.loop_rate`, `layers.mean_executed`) are those estimates' points.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dynamax_bench.artefacts import artefact, samples_digest
from dynamax_bench.costs.ledger import cell_flops
from dynamax_bench.costs.speculation import speculation_summary
from dynamax_bench.files import read_json, write_json
from dynamax_bench.backbones.meta import read_backbone_meta
from dynamax_bench.provenance import provenance
from dynamax_bench.reporting.statistics import (
    Estimate,
    Groups,
    IntervalSettings,
    Ratio,
    estimates,
    groups_of,
    lm_eval_stderr,
    quantities,
    ratio_from,
)
from dynamax_bench.generation.generate import read_generations
from dynamax_bench.generation.tasks import load_samples
from dynamax_bench.spec import DecodeSpec, MethodSpec, TaskSpec

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


def consistency(records: list[dict], full: list[dict]) -> dict[str, list[float]]:
    """Per sample, agreement of a method's output with the full model's on the same prompt."""
    return {
        "consistency.output_match": [float(r["output"] == f["output"]) for r, f in zip(records, full)],
        "consistency.token_prefix_agreement": [prefix_agreement(r["token_ids"], f["token_ids"])
                                               for r, f in zip(records, full)],
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


def check_aligned(records: list[dict], full: list[dict], what: str) -> None:
    """Records of two files must be the same samples in the same order (consistency pairs them)."""
    ids, full_ids = [r["id"] for r in records], [f["id"] for f in full]
    if ids != full_ids:
        raise ValueError(f"{what}: sample ids differ from the full model's generations; rerun both with one config")


def sample_lists(records: list[dict], full: list[dict], metrics: dict[str, list[float]], flops: list[dict],
                 groups: list[str] | None = None) -> dict:
    """The `per_sample` block: one list per quantity, in sample order (see statistics.DERIVED for
    the ratios built from the FLOPs, layer and token lists). `flops`: the ledger's per-sample
    executed and full totals (prompt forward and a stateful classifier's prompt pass included) and
    those of the decode steps alone. `groups`: each sample's group (a CoQA story), resampled whole."""
    if len(flops) != len(records):
        raise ValueError(f"the cost ledger returned {len(flops)} per-sample totals for {len(records)} samples")
    return {
        "ids": [r["id"] for r in records],
        "groups": groups if groups is not None else [r["id"] for r in records],
        **{f"metrics.{name}": values for name, values in metrics.items()},
        **consistency(records, full),
        "degeneration.loop_rate": [float(loops(r["token_ids"])) for r in records],
        "flops.executed": [s["executed"] for s in flops],
        "flops.full": [s["full"] for s in flops],
        "flops.decode_executed": [s["decode_executed"] for s in flops],
        "flops.decode_full": [s["decode_full"] for s in flops],
        "layers.executed": [sum(r["layers_executed"]) for r in records],
        "tokens.generated": [len(r["layers_executed"]) for r in records],
    }


def check_lossless(method: MethodSpec, per_sample: dict[str, list], where: str) -> None:
    """A method whose output is the full model's by construction (spec-*, the oracle, prune0) must match
    `full` on every sample; a cell that says otherwise is a bug, never a result."""
    differing = [i for i, match in zip(per_sample["ids"], per_sample["consistency.output_match"]) if match != 1.0]
    if method.lossless and differing:
        raise ValueError(f"{where}: {method.name} reproduces the full model's output by construction, but samples "
                         f"{differing[:10]} ({len(differing)} of {len(per_sample['ids'])}) "
                         "differ from full's: a bug of the engine; regenerate both cells and report it")


def speculation_block(records: list[dict], groups: Groups, settings: IntervalSettings) -> dict:
    """A spec-* cell's acceptance statistics (costs/speculation.py), its per-sample drafted and accepted
    counts (in sample order), and intervals of its acceptance rates, resampled by the cell's sample groups."""
    per_sample = {"drafted": [sum(r["speculation"]["drafted"]) for r in records],
                  "accepted": [sum(r["speculation"]["accepted"]) for r in records],
                  "tried": [sum(a + (a < d) for d, a in zip(r["speculation"]["drafted"], r["speculation"]["accepted"]))
                            for r in records]}
    ratios = {"acceptance_rate": Ratio(np.asarray(per_sample["accepted"], float), np.asarray(per_sample["drafted"], float)),
              "per_draft_acceptance": Ratio(np.asarray(per_sample["accepted"], float),
                                            np.asarray(per_sample["tried"], float))}
    drafting = sum(1 for d in per_sample["drafted"] if d)  # a resample of only draft-free samples has no rate
    found = estimates(ratios, groups, settings) if drafting >= 2 else {}
    return {**speculation_summary(records), "per_sample": per_sample,
            "intervals": {name: est.to_dict() for name, est in found.items()}}


def intervals(per_sample: dict[str, list], settings: IntervalSettings) -> dict:
    """Every quantity's estimate (value, lo, hi, n), task metrics also with lm-eval's stderr."""
    found: dict[str, Estimate] = estimates(
        {q: ratio_from(per_sample, q, "per_sample") for q in quantities(per_sample)}, groups_of(per_sample), settings)
    out = {}
    for name, est in found.items():
        entry = est.to_dict()
        if name.startswith("metrics."):
            entry["stderr"] = lm_eval_stderr(per_sample[name])
        out[name] = entry
    return {**settings.to_dict(), "estimates": out}


def score_cell(
    task_spec: TaskSpec,
    generations: str | Path,
    full_generations: str | Path,
    backbone_dir: str | Path,
    flops: str | Path,
    out_path: str | Path,
    profile: str,
    evidence: IntervalSettings,
) -> dict:
    """Score one cell; `flops` is the backbone's block table (rule flops) for the savings, `evidence`
    the interval settings (the profile's `evidence` section)."""
    meta = read_backbone_meta(backbone_dir)
    header, records = read_generations(generations)
    _, full = read_generations(full_generations)
    check_aligned(records, full, str(generations))
    task, samples = load_samples(task_spec)
    check_aligned(records, [{"id": s.id} for s in samples], str(generations))
    spec = DecodeSpec.from_dict(header["decode_spec"])
    scores = [task.score_one(sample, record["output"]) for sample, record in zip(samples, records)]
    costs = cell_flops(records, spec.method, read_json(flops))
    metrics = {name: [s[name] for s in scores] for name in task.metrics}
    per_sample = sample_lists(records, full, metrics, costs.pop("per_sample"), [s.unit for s in samples])
    check_lossless(spec.method, per_sample, str(generations))
    summary = intervals(per_sample, evidence)
    value = {name: entry["value"] for name, entry in summary["estimates"].items()}
    exits = [layer for record in records for layer in record["layers_executed"]]
    cell = {
        "backbone": meta["name"],
        "backbone_label": meta["label"],
        "task": task_spec.name,
        "method": spec.method.name,
        "spec": spec.to_dict(),
        "task_spec": task_spec.to_dict(),
        "metrics": {name: value[f"metrics.{name}"] for name in task.metrics},
        "consistency": {name: value[f"consistency.{name}"] for name in ("output_match", "token_prefix_agreement")},
        "degeneration": {"loop_rate": value["degeneration.loop_rate"], "ngram": LOOP_NGRAM, "min_count": LOOP_MIN_COUNT},
        "layers": {
            "num_layers": meta["num_layers"],
            "exit_positions": header["exit_positions"],
            "mean_executed": value["layers.mean_executed"],
            "histogram": {str(layer): exits.count(layer) for layer in sorted(set(exits))},
        },
        "flops": costs,
        # a spec-* cell's rounds: drafted, accepted, verification passes, acceptance rates (None otherwise)
        "speculation": speculation_block(records, groups_of(per_sample), evidence) if spec.method.kind == "spec" else None,
        "intervals": summary,
        "per_sample": per_sample,
        # a batched run's agreement with batch 1 (rows and tokens the batch changed, the near ties
        # that explain them; its generations are the batch-1 ones), None on the reference path
        "agreement": header.get("agreement"),
        # what the cell is made from (the generations' weights and the task's samples): the regression
        # gate holds a cell to the reference's exact tokens only where these are the reference's
        "artefacts": {**header.get("artefacts", {}), "task": artefact(task_spec.name, samples_digest(samples))},
        "n_samples": len(records),
        "n_tokens": len(exits),
        "provenance": provenance(profile, {"decode_spec": spec.to_dict(), "task_spec": task_spec.to_dict(),
                                           "evidence": evidence.to_dict()}),
    }
    write_json(out_path, cell)
    return cell
