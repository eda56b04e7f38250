"""Tables 10, 10b and 10c: self-speculative decoding (`spec-e<E>-k<K>`), lossless early exit.

Table 10, per cell: how many drafts the full model accepted (rate and per-draft acceptance, with their
intervals over samples), tokens kept per verification pass against what the i.i.d. acceptance model
predicts from the per-draft acceptance, consistency with `full` (1 by construction), the decode FLOPs
against the full model's, and the speedup the model predicts from the per-draft acceptance and the
blocks' measured cost (seconds) or their FLOPs. Table 10b, per backbone and spec method, on the
latency rule's timed prompts: the same prediction against the measured speedup. Table 10c: which
(E, K) would pay, predicted from the oracle's per-exit agreement with the final layer (the first draft of
a round is accepted exactly when the exit agrees) under each cost unit. The model is costs/speculation.py.
"""

from __future__ import annotations

import pandas as pd

from dynamax_bench.costs.speculation import BlockCosts, agreement_by_exit, expected_tokens, payoff_grid
from dynamax_bench.reporting.tables.render import PaperInputs, Table
from dynamax_bench.spec import method_of


def _costs(latency: list[dict], flops: list[dict]) -> tuple[dict[str, BlockCosts], dict[str, BlockCosts]]:
    """Per backbone: the blocks' measured seconds (the first spec-* latency file that has them) and FLOPs."""
    seconds = {}
    for entry in sorted(latency, key=lambda e: (e["backbone"], e["method"])):
        if entry.get("block_seconds") and entry["backbone"] not in seconds:
            seconds[entry["backbone"]] = BlockCosts.from_dict(entry["block_seconds"])
    return seconds, {table["backbone"]: BlockCosts.from_flops(table) for table in flops}


def _predicted(costs: BlockCosts | None, alpha: float | None, layer: int, drafts: int) -> float | None:
    return None if costs is None or alpha is None else costs.speedup(alpha, layer, drafts)


def speculation_table(cells: list[dict], latency: list[dict] = (), flops: list[dict] = ()) -> pd.DataFrame:
    """Table 10 (module docstring): one row per spec-* cell."""
    seconds, counted = _costs(list(latency), list(flops))
    rows = []
    for cell in sorted(cells, key=lambda c: (c["backbone"], c["task"], c["method"])):
        method = method_of(cell)
        if method.kind != "spec":
            continue
        found, backbone = cell["speculation"], cell["backbone"]
        layer, drafts, alpha = method.draft_layer, method.draft_tokens, found["per_draft_acceptance"]
        row = {"backbone": backbone, "task": cell["task"], "method": cell["method"], "E": layer, "K": drafts,
               "passes": found["passes"], "drafted": found["drafted"], "accepted": found["accepted"]}
        for column, name in (("acceptance rate", "acceptance_rate"), ("per-draft acceptance", "per_draft_acceptance")):
            entry = found["intervals"].get(name)
            row.update({column: found[name], f"{column} lo": entry and entry["lo"], f"{column} hi": entry and entry["hi"]})
        row["tokens per pass"] = found["tokens_per_pass"]
        row["i.i.d. tokens per pass"] = None if alpha is None else expected_tokens(alpha, drafts)
        row["consistency"] = cell["consistency"]["output_match"]
        per_token = cell["flops"]
        row["decode FLOPs / full"] = (per_token["per_token_executed"] / per_token["per_token_full"]
                                      if per_token["per_token_full"] else None)
        row["predicted speedup (seconds)"] = _predicted(seconds.get(backbone), alpha, layer, drafts)
        row["predicted speedup (FLOPs)"] = _predicted(counted.get(backbone), alpha, layer, drafts)
        row["n"] = cell["n_samples"]
        rows.append(row)
    return pd.DataFrame(rows)


def speculation_latency_table(latency: list[dict]) -> pd.DataFrame:
    """Table 10b: on the latency rule's timed prompts (batch 1), each spec-* method's acceptance there, the
    speedup its blocks' measured seconds predict from it, and the speedup measured (the median time per
    decode step of `full`, timed beside it in the same job, over the method's)."""
    rows = []
    for entry in sorted(latency, key=lambda e: (e["backbone"], e["method"])):
        method = method_of(entry)
        if method.kind != "spec":
            continue
        found, costs = entry["speculation"], BlockCosts.from_dict(entry["block_seconds"])
        alpha, mine = found["per_draft_acceptance"], entry["seconds_per_decode_token"]
        base = (entry.get("reference") or {}).get("seconds_per_decode_token")
        rows.append({
            "backbone": entry["backbone"], "method": entry["method"], "task": entry["task"], "prompts": entry["prompts"],
            "per-draft acceptance": alpha, "tokens per pass": found["tokens_per_pass"],
            "ms per full step (blocks)": 1000 * costs.full_step(),
            "ms per round (blocks)": 1000 * costs.round(method.draft_layer, method.draft_tokens),
            "predicted speedup": _predicted(costs, alpha, method.draft_layer, method.draft_tokens),
            "measured speedup": base["median"] / mine["median"] if base and mine else None,
            "FLOPs speedup": entry["flops_per_decode_token"]["predicted_speedup"],
        })
    return pd.DataFrame(rows)


def payoff_table(classifiers: list[dict], latency: list[dict] = (), flops: list[dict] = ()) -> pd.DataFrame:
    """Table 10c: per backbone, exit and K, the speedup self-speculative decoding would give, predicted
    from the exit's top-1 agreement with the final layer on the held-out corpus (classifier JSONs), with
    the blocks' measured seconds (where a spec-* latency file holds them) and with their FLOPs."""
    seconds, counted = _costs(list(latency), list(flops))
    rows = []
    for meta in sorted({m["backbone"]: m for m in classifiers}.values(), key=lambda m: m["backbone"]):
        backbone = meta["backbone"]
        costs = [c for c in (seconds.get(backbone), counted.get(backbone)) if c is not None]
        for row in payoff_grid(agreement_by_exit(meta), costs):
            rows.append({"backbone": backbone, **row})
    return pd.DataFrame(rows)


def tables(inputs: PaperInputs) -> list[Table]:
    """Tables 10, 10b and 10c, for a run with self-speculative cells (none otherwise)."""
    if not any(method_of(cell).kind == "spec" for cell in inputs.cells):
        return []
    return [
        Table("Table 10: self-speculative decoding", "table10_speculative",
              speculation_table(inputs.cells, inputs.latency, inputs.flops),
              f"Self-speculative decoding (lossless): drafts accepted by the full model ({inputs.level} intervals over "
              "samples), tokens per verification pass against the i.i.d. acceptance model, consistency with full (1 by "
              "construction), decode FLOPs against full, and the speedup predicted from the per-draft acceptance with "
              "the blocks' measured seconds (batch 1, this machine) or their FLOPs"),
        Table("Table 10b: self-speculative speedup, predicted vs measured", "table10b_speculative_latency",
              speculation_latency_table(inputs.latency),
              "Self-speculative decoding on the latency rule's timed prompts (batch 1): per-draft acceptance there, the "
              "speedup the blocks' measured seconds predict from it, the speedup measured (full's median time per "
              "decode step over the method's) and the one the FLOPs give"),
        Table("Table 10c: which (E, K) would pay", "table10c_speculative_payoff",
              payoff_table(inputs.classifiers, inputs.latency, inputs.flops),
              "Self-speculative decoding at every exit E and K drafts: speedup predicted from the exit's top-1 agreement "
              "with the final layer on the held-out corpus (the oracle's labels at k = 1), with the blocks' measured "
              "seconds (batch 1, where a spec-* latency file holds them) and with their FLOPs; above 1 it pays"),
    ]
