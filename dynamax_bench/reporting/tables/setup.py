"""Table 1: the setup, from the flops rule's counts."""

from __future__ import annotations

import pandas as pd

from dynamax_bench.reporting.tables.render import PaperInputs, Table


def setup_table(flops: list[dict]) -> pd.DataFrame:
    """Backbones (layers, parameters, exits, FLOPs per token of a layer and the head) and exit
    methods (parameters, FLOPs per decision per exit), on each backbone's width."""
    rows = []
    for table in sorted(flops, key=lambda t: t["backbone"]):
        blocks = table["blocks"]
        rows.append({"backbone": table["backbone"], "block": f"decoder layer x {table['num_layers']}",
                     "parameters": table["parameters"]["layer"], "FLOPs per token": blocks["layer_decode"]["flops"],
                     "exit positions": " ".join(map(str, table["exit_positions"])),
                     "backbone parameters": table["parameters"]["total"]})
        rows.append({"backbone": table["backbone"], "block": "final norm + LM head",
                     "parameters": table["parameters"]["head"], "FLOPs per token": blocks["head"]["flops"]})
        if "fill_partial" in blocks:
            rows.append({"backbone": table["backbone"], "block": "partial-forward fill, one skipped layer",
                         "parameters": 0, "FLOPs per token": blocks["fill_partial"]["flops"]})
        for kind, step in sorted(table["exit_methods"].items()):
            rows.append({"backbone": table["backbone"], "block": f"exit method {kind} (one exit)",
                         "parameters": step["parameters"], "FLOPs per token": step["flops"]})
    df = pd.DataFrame(rows)
    # only the layer row carries the backbone's total: keep it an integer count beside the blanks
    return df.astype({"backbone parameters": "Int64"}) if rows else df


def tables(inputs: PaperInputs) -> list[Table]:
    unit = inputs.flops[0]["unit"] if inputs.flops else "fvcore flops"
    return [Table("Table 1: setup", "table1_setup", setup_table(inputs.flops),
                  f"Setup: parameters and FLOPs per token of each block (decode step; {unit})")]
