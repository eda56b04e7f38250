"""Table 5: the state-policy ablation."""

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

REFERENCE_POLICY = "partial"  # the skipped layers compute their own states: the exact-cache reference


def policy_ablation(cells: list[dict], settings: IntervalSettings) -> pd.DataFrame:
    """The same kind and (typed-in) threshold under each state policy of the backbone; every other
    policy also as its paired difference from `partial` over the same samples (e.g. copy - partial)."""
    rows = []
    reference = {(c["backbone"], c["task"], method_of(c).exit_kind, method_of(c).threshold): c
                 for c in claims.ee_cells(cells, policy=REFERENCE_POLICY, fixed=True)}
    for cell in claims.ee_cells(cells, fixed=True):
        m = method_of(cell)
        metric = primary_metric(cell)
        row = {"backbone": cell["backbone"], "task": cell["task"], "kind": m.exit_kind, "threshold": m.threshold,
               "policy": m.policy,
               **estimate_columns(metric, estimate_of(cell, f"metrics.{metric}")),
               **estimate_columns("consistency", estimate_of(cell, "consistency.output_match")),
               **estimate_columns("decode savings", estimate_of(cell, "flops.decode_savings")),
               **estimate_columns("mean layers", estimate_of(cell, "layers.mean_executed"))}
        partial = reference.get((cell["backbone"], cell["task"], m.exit_kind, m.threshold))
        if partial is not None and partial is not cell:
            for column, quantity in ((f"{metric}{DIFF}", f"metrics.{metric}"),
                                     (f"consistency{DIFF}", "consistency.output_match"),
                                     (f"decode savings{DIFF}", "flops.decode_savings")):
                row.update(difference_columns(column, cell, partial, quantity, settings))
        row["n"] = cell["n_samples"]
        rows.append(row)
    if not rows:
        return pd.DataFrame(rows)
    df = pd.DataFrame(rows).sort_values(["backbone", "task", "kind", "threshold", "policy"], kind="stable")
    return df[[c for c in df.columns if c != "n"] + ["n"]]


def tables(inputs: PaperInputs) -> list[Table]:
    return [Table("Table 5: state-policy ablation", "table5_policy_ablation",
                  policy_ablation(inputs.cells, inputs.settings),
                  f"State policies: copy vs partial (Transformer), skip vs partial (Mamba-2); "
                  f"diff = policy - partial over the same samples ({inputs.level} intervals)")]
