"""Measured decode speedups against `full`, with an interval over the timed prompts (Table 3, Figure 3)."""

from __future__ import annotations

import numpy as np

from dynamax_bench.reporting.statistics import Groups, IntervalSettings, Ratio, estimate
from dynamax_bench.spec import method_of


def speedups(latency: list[dict], settings: IntervalSettings) -> dict[tuple[str, str], dict]:
    """(backbone, method) -> `full`'s time per decode step over the method's, summed over the timed runs, each
    run paired with the run of `full` beside it in the same job (same prompt and repeat: costs/latency.py),
    with its interval resampling prompts, each with its repeats (a cluster bootstrap: a prompt's repeats
    share its tokens). `full` is its own reference. Decode steps only: the prompt's forward runs every
    layer under every method."""
    out = {}
    for entry in latency:
        times = entry.get("decode_seconds")
        reference = times if method_of(entry).kind == "full" else (entry.get("reference") or {}).get("decode_seconds")
        if not times or not reference:
            continue
        pairs = [(prompt, f, t) for prompt, (fulls, mine) in enumerate(zip(reference, times))
                 for f, t in zip(fulls, mine)]
        if not pairs:
            continue
        ratio = Ratio(np.array([f for _, f, _ in pairs]), np.array([t for _, _, t in pairs]))
        groups = Groups.of([str(prompt) for prompt, _, _ in pairs])
        out[(entry["backbone"], entry["method"])] = estimate(lambda take: take(ratio), groups, settings).to_dict()
    return out
