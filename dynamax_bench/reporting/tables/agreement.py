"""Table 7: batched decoding against batch 1, per cell."""

from __future__ import annotations

import pandas as pd

from dynamax_bench.reporting.tables.render import PaperInputs, Table, method_order
from dynamax_bench.spec import method_of


def agreement_table(cells: list[dict]) -> pd.DataFrame:
    """Each cell's batched decoding against batch 1 (the cell's `agreement`, written by
    generation.decoder.Decoder): rows, rows that met a near tie (re-decoded at batch 1, whose output
    the cell keeps), rows and tokens the batch had changed, and changes no near tie explains (a run
    with one stops, so 0 here). A cell decoded on the reference path has no agreement to report."""
    rows = []
    for cell in sorted(cells, key=lambda c: (c["backbone"], c["task"], method_order(c))):
        spec, found = cell.get("spec", {}), cell.get("agreement")
        row = {"backbone": cell["backbone"], "task": cell["task"], "method": cell["method"],
               "batch size": spec.get("batch_size"), "prefix cache": "yes" if spec.get("prefix_cache") else "no"}
        if found is None:
            row["path"] = "reference (batch 1)"
        else:  # a spec-* cell: batch 1, its near-tie rows checked against the full model's plain decode
            path = "self-speculative (batch 1)" if method_of(cell).kind == "spec" else "batched"
            row.update({"path": path, "rows": found["rows"], "rows with near ties": found["rows_with_near_ties"],
                        "rows re-decoded": found["rows_redecoded"], "rows changed by the batch": found["rows_differing"],
                        "tokens changed by the batch": found["tokens_differing"], "unexplained": found["unexplained"]})
        rows.append(row)
    return pd.DataFrame(rows)


def tables(inputs: PaperInputs) -> list[Table]:
    return [Table("Table 7: batched decoding vs batch 1", "table7_batch_agreement", agreement_table(inputs.cells),
                  "Batched decoding against batch 1, per cell: rows that met a near tie were re-decoded at batch 1 and "
                  "the cell keeps that output; changed rows and tokens are what the batch had changed there")]
