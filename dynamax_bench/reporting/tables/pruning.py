"""Table 4: early exit against static layer pruning at matched savings."""

from __future__ import annotations

import pandas as pd

from dynamax_bench.reporting import claims
from dynamax_bench.reporting.statistics import IntervalSettings, estimate_of
from dynamax_bench.reporting.tables.render import (
    DIFF,
    PaperInputs,
    Table,
    difference_columns,
    estimate_columns,
    primary_metric,
)
from dynamax_bench.spec import method_of


def pruning_comparison(cells: list[dict], settings: IntervalSettings) -> pd.DataFrame:
    """Each static pruning level against the EE cell of each kind whose total savings are
    closest to it (ties: the more consistent), per backbone and task, with the paired differences
    EE - pruning of consistency and of the task's first metric over the same samples."""
    rows = []
    for (backbone, task), group_cells in sorted(claims.group(cells).items()):
        for prune in sorted((c for c in group_cells if method_of(c).kind == "prune"),
                            key=lambda c: method_of(c).prune):
            if method_of(prune).prune == 0:
                continue
            target = claims.total_savings(prune)
            metric = primary_metric(prune)
            row = {"backbone": backbone, "task": task, "pruning": prune["method"],
                   **estimate_columns("savings", estimate_of(prune, "flops.total_savings")),
                   **estimate_columns(f"pruning {metric}", estimate_of(prune, f"metrics.{metric}")),
                   **estimate_columns("pruning consistency", estimate_of(prune, "consistency.output_match"))}
            for kind in sorted({method_of(c).exit_kind for c in claims.ee_cells(group_cells)}):
                best = min(claims.ee_cells(group_cells, kind),
                           key=lambda c: (abs(claims.total_savings(c) - target), -c["consistency"]["output_match"]))
                row[f"{kind} method"] = best["method"]
                row[f"{kind} savings"] = claims.total_savings(best)
                row[f"{kind} consistency"] = best["consistency"]["output_match"]
                row.update(difference_columns(f"{kind} consistency{DIFF}", best, prune, "consistency.output_match",
                                              settings))
                row.update(difference_columns(f"{kind} {metric}{DIFF}", best, prune, f"metrics.{metric}", settings))
            row["n"] = prune["n_samples"]
            rows.append(row)
    return pd.DataFrame(rows)


def tables(inputs: PaperInputs) -> list[Table]:
    return [Table("Table 4: early exit vs static pruning", "table4_ee_vs_pruning",
                  pruning_comparison(inputs.cells, inputs.settings),
                  f"Early exit against static layer pruning at matched total savings (closest EE cell per kind); "
                  f"diff = EE - pruning over the same samples ({inputs.level} intervals)")]
