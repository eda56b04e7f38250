"""Table 4: early exit against static layer pruning at matched cost.

Each pruning level against the early-exit rows calibrated to its decode savings (`-p<N>`: the threshold
whose decode savings on the calibration split reach the level's), per backbone and task: each side's
decode savings, consistency with full and task metric on the evaluated samples, and the paired
differences EE - pruning over the same samples. The claim (Table 6) reads the same cells.
"""

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

SAVINGS = "flops.decode_savings"


def pruning_comparison(cells: list[dict], settings: IntervalSettings) -> pd.DataFrame:
    rows = []
    for (backbone, task), group_cells in sorted(claims.group(cells).items()):
        matched = claims.calibrated(group_cells, "prune")
        for prune in sorted((c for c in group_cells if method_of(c).kind == "prune" and method_of(c).prune > 0),
                            key=lambda c: method_of(c).prune):
            level, metric = method_of(prune).prune, primary_metric(prune)
            base = {"backbone": backbone, "task": task, "pruning": prune["method"],
                    **estimate_columns("pruning decode savings", estimate_of(prune, SAVINGS)),
                    **estimate_columns("pruning consistency", estimate_of(prune, "consistency.output_match")),
                    **estimate_columns(f"pruning {metric}", estimate_of(prune, f"metrics.{metric}"))}
            for (kind, policy, value), cell in sorted(matched.items()):
                if int(value) != level:
                    continue
                m = method_of(cell)
                row = {**base, "kind": kind, "policy": policy, "threshold": m.threshold,
                       "reached": "yes" if m.certified else "no",
                       **estimate_columns("decode savings", estimate_of(cell, SAVINGS)),
                       **estimate_columns("consistency", estimate_of(cell, "consistency.output_match")),
                       **estimate_columns(metric, estimate_of(cell, f"metrics.{metric}")),
                       **difference_columns(f"consistency{DIFF}", cell, prune, "consistency.output_match", settings),
                       **difference_columns(f"{metric}{DIFF}", cell, prune, f"metrics.{metric}", settings),
                       "n": prune["n_samples"]}
                rows.append(row)
    return pd.DataFrame(rows)


def tables(inputs: PaperInputs) -> list[Table]:
    return [Table("Table 4: early exit vs static pruning", "table4_ee_vs_pruning",
                  pruning_comparison(inputs.cells, inputs.settings),
                  "Early exit against static layer pruning at matched decode savings: each kind's threshold "
                  "calibrated to the pruning level's decode savings (reached: on the calibration split); "
                  f"diff = EE - pruning over the same samples ({inputs.level} intervals)")]
