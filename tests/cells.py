"""Hand-built cells with per-sample values, summarised by the score rule's own `intervals`."""

from __future__ import annotations

from dataclasses import asdict

from dynamax_bench.reporting.score import intervals
from dynamax_bench.reporting.statistics import IntervalSettings
from dynamax_bench.spec import parse_method

SETTINGS = IntervalSettings(confidence=0.95, resamples=500, seed=7)
EVIDENCE = {**asdict(SETTINGS), "min_samples": 10}


def make_cell(method: str, match: list[float], savings: list[float] | None = None, loops: list[float] | None = None,
              em: list[float] | None = None, backbone: str = "b", task: str = "t", ids: list[str] | None = None) -> dict:
    """A cell of `len(match)` samples: consistency per sample, savings per sample (each sample's full
    cost is 100 FLOPs), loops and EM per sample (default: no loops, EM = match)."""
    n = len(match)
    savings = savings if savings is not None else [0.0] * n
    per_sample = {
        "ids": ids or [f"s{i}" for i in range(n)],
        "metrics.em": list(em if em is not None else match),
        "consistency.output_match": list(match),
        "consistency.token_prefix_agreement": list(match),
        "degeneration.loop_rate": list(loops if loops is not None else [0.0] * n),
        "flops.executed": [100.0 * (1.0 - s) for s in savings],
        "flops.full": [100.0] * n,
        "layers.executed": [8 * 4] * n,
        "tokens.generated": [4] * n,
    }
    summary = intervals(per_sample, SETTINGS)
    value = {k: v["value"] for k, v in summary["estimates"].items()}
    return {"backbone": backbone, "backbone_label": f"{backbone} (hand-built)", "task": task, "method": method, "spec": {"method": asdict(parse_method(method))},
            "metrics": {"em": value["metrics.em"]},
            "consistency": {"output_match": value["consistency.output_match"],
                            "token_prefix_agreement": value["consistency.token_prefix_agreement"]},
            "degeneration": {"loop_rate": value["degeneration.loop_rate"]},
            "layers": {"mean_executed": value["layers.mean_executed"], "num_layers": 8, "histogram": {"8": 4 * n}},
            "flops": {"savings": value["flops.total_savings"], "decode_savings": value["flops.total_savings"]},
            "intervals": summary, "per_sample": per_sample, "n_samples": n}


def share(hits: int, n: int) -> list[float]:
    """n per-sample 0/1 values, the first `hits` of them 1."""
    return [1.0] * hits + [0.0] * (n - hits)
