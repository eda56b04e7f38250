"""Hand-built cells with per-sample values, summarised by the score rule's own `intervals`."""

from __future__ import annotations

from dataclasses import asdict, replace

from dynamax_bench.reporting.score import intervals
from dynamax_bench.reporting.statistics import IntervalSettings
from dynamax_bench.spec import parse_method

SETTINGS = IntervalSettings(confidence=0.95, resamples=500, seed=7)
EVIDENCE = {**asdict(SETTINGS), "min_samples": 10, "claim_resamples": 2000,
            "margins": {"decode_savings": 0.01, "consistency": 0.05, "loop_rate": 0.05},
            "competence": {"metric": {"t": "em"}, "floor": {"t": 0.05}, "max_loop_rate": 0.2}}


def make_cell(method: str, match: list[float], savings: list[float] | None = None, loops: list[float] | None = None,
              em: list[float] | None = None, backbone: str = "b", task: str = "t", ids: list[str] | None = None,
              groups: list[str] | None = None, threshold: float | None = 0.9, certified: bool = True) -> dict:
    """A cell of `len(match)` samples: consistency per sample, savings per sample (each sample's full
    cost is 100 FLOPs, 80 of them in its decode steps, where all of the savings fall), loops and EM per
    sample (default: no loops, EM = match). A calibrated method (`-c<target>`, `-p<N>`) gets `threshold`
    and `certified` as its calibration would set them (an uncertified consistency target: no threshold)."""
    n = len(match)
    savings = savings if savings is not None else [0.0] * n
    spec = parse_method(method)
    if spec.calibrated:
        spec = replace(spec, threshold=threshold if certified or spec.target == "prune" else None, certified=certified)
    per_sample = {
        "ids": ids or [f"s{i}" for i in range(n)],
        "groups": groups or ids or [f"s{i}" for i in range(n)],
        "metrics.em": list(em if em is not None else match),
        "consistency.output_match": list(match),
        "consistency.token_prefix_agreement": list(match),
        "degeneration.loop_rate": list(loops if loops is not None else [0.0] * n),
        "flops.executed": [100.0 - 80.0 * s for s in savings],
        "flops.full": [100.0] * n,
        "flops.decode_executed": [80.0 * (1.0 - s) for s in savings],
        "flops.decode_full": [80.0] * n,
        "layers.executed": [8 * 4] * n,
        "tokens.generated": [4] * n,
    }
    summary = intervals(per_sample, SETTINGS)
    value = {k: v["value"] for k, v in summary["estimates"].items()}
    return {"backbone": backbone, "backbone_label": f"{backbone} (hand-built)", "task": task, "method": method,
            "spec": {"method": asdict(spec)},
            "metrics": {"em": value["metrics.em"]},
            "consistency": {"output_match": value["consistency.output_match"],
                            "token_prefix_agreement": value["consistency.token_prefix_agreement"]},
            "degeneration": {"loop_rate": value["degeneration.loop_rate"]},
            "layers": {"mean_executed": value["layers.mean_executed"], "num_layers": 8, "histogram": {"8": 4 * n}},
            "flops": {"savings": value["flops.total_savings"], "decode_savings": value["flops.decode_savings"]},
            "intervals": summary, "per_sample": per_sample, "n_samples": n}


def share(hits: int, n: int) -> list[float]:
    """n per-sample 0/1 values, the first `hits` of them 1."""
    return [1.0] * hits + [0.0] * (n - hits)
