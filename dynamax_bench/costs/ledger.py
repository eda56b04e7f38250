"""FLOPs actually executed by a cell, from its per-token exit trace and the block table.

Per generated token (the first one comes from the prompt's full forward and costs a full decode
step here, in the executed and the full count alike):
  executed = layers run x layer decode step
           + skipped layers x the state policy's fill work (partial forward; copy/skip: 0)
           + exit-method steps x their cost (trained classifiers and training-free rules)
           + head (final norm + LM head)
  full     = L x layer decode step + head
Exit-method steps: a token leaving at exit e evaluated the method at every exit position <= e
(every position when it did not leave); a stateful classifier (`mamba`) also steps at the exit
positions after e, where the engine advances its state with the exited hidden state. The oracle
is the ceiling: its exits are counted without any decision cost or fill work. Savings =
1 - executed / full over all generated tokens of the cell.
"""

from __future__ import annotations

from dynamax_bench.classifiers.registry import exit_method
from dynamax_bench.spec import MethodSpec


def token_cost(exit_layer: int, first: bool, method: MethodSpec, table: dict) -> int:
    """FLOPs executed for one generated token that ran `exit_layer` layers."""
    blocks = table["blocks"]
    num_layers = table["num_layers"]
    cost = exit_layer * blocks["layer_decode"]["flops"] + blocks["head"]["flops"]
    if method.kind != "ee" or first:
        return cost  # full, prune, oracle; and the prompt's token (no decision taken)
    exits = table["exit_positions"]
    step = table["exit_methods"][method.exit_kind]["flops"]
    stateful = exit_method(method.exit_kind).stateful
    decisions = len(exits) if stateful else sum(1 for e in exits if e <= exit_layer)
    fill = (num_layers - exit_layer) * blocks[f"fill_{method.policy}"]["flops"]
    return cost + decisions * step + fill


def full_token_flops(table: dict) -> int:
    """FLOPs of one decode step of the full model: every layer and the head."""
    return table["num_layers"] * table["blocks"]["layer_decode"]["flops"] + table["blocks"]["head"]["flops"]


def cell_flops(records: list[dict], method: MethodSpec, table: dict) -> dict:
    """Executed and full FLOPs per generated token, and the savings, for one cell's records."""
    full_token = full_token_flops(table)
    executed = tokens = 0
    for record in records:
        for position, layers in enumerate(record["exit_layers"]):
            executed += token_cost(layers, position == 0, method, table)
            tokens += 1
    if tokens == 0:
        raise ValueError(f"{method.name}: no generated tokens to count")
    return {
        "per_token_executed": executed / tokens,
        "per_token_full": float(full_token),
        "savings": 1.0 - executed / (full_token * tokens),
        "context_length": table["context_length"],
        "unit": table["unit"],
    }
