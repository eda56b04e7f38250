"""Tables 2 and 2b: the trained classifiers on held-out tokens, and the choice of top-k; and the
exit-weight ablation (rule exit_weight_ablation, on demand)."""

from __future__ import annotations

import pandas as pd

from dynamax_bench.reporting.tables.render import PaperInputs, Table


def distillation_table(classifiers: list[dict]) -> pd.DataFrame:
    """Per backbone, kind, top-k and exit, the label statistics of the trained classifiers on
    the test split (documents and topics that neither training nor the epoch or k choice saw), and
    their simulated early exit there. Each kind appears at the k its backbone chose; the probe kind of
    the k choice also at every other candidate, from the same oracle pass."""
    rows = []

    def add(meta: dict, kind: str, k: int, result: dict) -> None:
        selection = meta["top_k_selection"]
        verdict = selection["candidates"][str(k)]
        choice = "chosen" if k == selection["chosen"] else "admissible" if verdict["admissible"] else "rejected"
        for layer in meta["exit_positions"]:
            ex = result["exits"][str(layer)]
            row = {"backbone": meta["backbone"], "kind": kind, "top-k": k, "k choice": choice, "exit layer": layer,
                   "positive rate": ex["positive_rate"], "accuracy": ex["accuracy"], "precision": ex["precision"],
                   "recall": ex["recall"], "F1": ex["f1"], "test tokens": ex["tokens"]}
            for t, sim in result["early_exit"].items():
                row[f"sim. consistency t={t}"] = sim["consistency"]
                row[f"sim. savings t={t}"] = sim["savings"]
            rows.append(row)

    trained = {(m["backbone"], m["kind"], m["training"]["top_k"]) for m in classifiers}
    for meta in sorted(classifiers, key=lambda m: (m["backbone"], m["kind"])):
        add(meta, meta["kind"], meta["training"]["top_k"], meta["test"])
    for meta in {m["backbone"]: m for m in classifiers}.values():
        selection = meta["top_k_selection"]
        for k, result in selection["sweep"].items():
            if (meta["backbone"], selection["probe"], int(k)) not in trained:
                add(meta, selection["probe"], int(k), result["test"])
    columns = ["backbone", "kind", "top-k", "exit layer"]
    return pd.DataFrame(rows).sort_values(columns, kind="stable").reset_index(drop=True) if rows else pd.DataFrame(rows)


def top_k_selection_table(classifiers: list[dict]) -> pd.DataFrame:
    """Why each backbone's k: per candidate and threshold, the probe's simulated early-exit
    consistency and savings on the validation split against the floor (lower end of the smallest
    candidate's 95% interval); the largest k at or above the floor at every threshold is chosen."""
    rows = []
    for meta in sorted({m["backbone"]: m for m in classifiers}.values(), key=lambda m: m["backbone"]):
        selection = meta["top_k_selection"]
        for k, verdict in sorted(selection["candidates"].items(), key=lambda item: int(item[0])):
            for t, check in verdict["thresholds"].items():
                interval = selection["sweep"][k]["validation"]["early_exit"][t]["interval"]
                rows.append({"backbone": meta["backbone"], "probe": selection["probe"], "top-k": int(k), "threshold": float(t),
                             "consistency": check["consistency"], "95% low": interval[0], "95% high": interval[1],
                             "floor": check["floor"], "savings": check["savings"],
                             "admissible": "yes" if verdict["admissible"] else "no",
                             "chosen": "yes" if int(k) == selection["chosen"] else ""})
    return pd.DataFrame(rows)


def exit_weight_ablation_table(ablations: list[dict]) -> pd.DataFrame:
    """Uniform vs decaying exit-loss weights, with per-exit and with shared classifier parameters
    (rule exit_weight_ablation): epoch kept, test F1, simulated early exit on the test split, and the
    largest parameter difference between the two weightings after the same steps."""
    rows = []
    for ablation in sorted(ablations, key=lambda a: a["backbone"]):
        for r in ablation["rows"]:
            row = {"backbone": ablation["backbone"], "kind": ablation["probe"], "top-k": ablation["top_k"],
                   "parameters": r["parameters"], "exit weights": r["exit_weights"],
                   "weights": " ".join(f"{w:.2f}" for w in r["exit_weight_values"]),
                   "epoch kept": r["selected_epoch"], "mean test F1": r["test_mean_f1"],
                   "max parameter difference, uniform vs decaying": ablation["parameter_difference"][r["parameters"]]}
            for t, sim in r["test_early_exit"].items():
                row[f"sim. consistency t={t}"] = sim["consistency"]
                row[f"sim. savings t={t}"] = sim["savings"]
            rows.append(row)
    return pd.DataFrame(rows)


def tables(inputs: PaperInputs) -> list[Table]:
    return [
        Table("Table 2: distillation", "table2_distillation", distillation_table(inputs.classifiers),
              "Distillation on the test split (documents and topics never trained on nor used to pick epochs or k): "
              "label statistics per backbone, classifier kind, top-k and exit (confidence >= 0.5), and simulated early "
              "exit (layer savings, no classifier cost); each kind at its backbone's chosen k (Table 2b), the probe "
              "kind at every candidate"),
        Table("Table 2b: top-k choice", "table2b_top_k_choice", top_k_selection_table(inputs.classifiers),
              "Top-k choice on the validation split: simulated early-exit consistency of the probe kind per candidate "
              "k and threshold; chosen: the largest k at or above the floor (lower end of the 95% document-bootstrap "
              "interval of the smallest k) at every threshold"),
        *([Table("Table 2c: exit-loss weights", "table2c_exit_weights", exit_weight_ablation_table(inputs.ablations),
                 "Uniform against linearly decaying exit-loss weights (the paper's), with a classifier per exit and one "
                 "shared by the exits, on the probe kind: epoch kept, test F1 and simulated early exit on the test split")]
          if inputs.ablations else []),
    ]
