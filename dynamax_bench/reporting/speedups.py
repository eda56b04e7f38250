"""Measured decode speedups against `full`, with an interval over the timed prompts (Table 3, Figure 3)."""

from __future__ import annotations

import numpy as np

from dynamax_bench.reporting.statistics import Groups, IntervalSettings, Ratio, estimate


def speedups(latency: list[dict], settings: IntervalSettings) -> dict[tuple[str, str], dict]:
    """(backbone, method) -> `full`'s time per decode step over the method's, summed over the timed prompts
    (each prompt's median over repeats, same run), with its interval resampling prompts (paired: the same
    prompts on both sides). Decode steps only: the prompt's forward runs every layer under every method."""
    by_prompt = {(l["backbone"], l["method"]): l.get("decode_seconds_by_prompt") for l in latency}
    out = {}
    for (backbone, method), times in by_prompt.items():
        full = by_prompt.get((backbone, "full"))
        if not times or not full:
            continue
        pairs = [(f, t) for f, t in zip(full, times) if f is not None and t is not None]
        if not pairs:
            continue
        ratio = Ratio(np.array([f for f, _ in pairs]), np.array([t for _, t in pairs]))
        out[(backbone, method)] = estimate(lambda take: take(ratio), Groups.singletons(len(pairs)), settings).to_dict()
    return out
