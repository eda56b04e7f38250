"""The `exit_weight_ablation` rule: do the per-exit loss weights w_e change the classifiers?

With one set of parameters per exit (the paper's set-up), the loss sum_e w_e CE_e gives exit e's
parameters the gradient w_e * grad CE_e, and AdamW divides each parameter's update by the root
of its own running squared gradient, so a constant factor per exit cancels (up to AdamW's eps):
uniform and linearly decaying weights train the same classifiers step for step and can only
differ in which epoch the weighted validation loss keeps. Where the exits share parameters
(`distill.share_parameters`: one classifier for every exit, each exit with its own input
standardisation), the weights trade the exits off against each other and do act. This rule
trains the probe kind under both weightings in both set-ups in one pass over the store and
measures both effects: the largest parameter difference after the same steps, and test F1 and
simulated early exit at the classifiers kept.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from dynamax_bench.classifiers.distill import evaluation, load_store
from dynamax_bench.classifiers.training import EXIT_WEIGHT_SCHEMES, TrainedSet, Variant, predict, train_variants
from dynamax_bench.files import read_json, write_json

log = logging.getLogger(__name__)

SETUPS = {False: "per_exit", True: "shared"}
# Parameters this close (relative to the largest) count as the same classifiers: AdamW's eps
# (1e-8 against gradients' running roots) is the only place where a per-exit scale survives.
SAME_PARAMETERS = 1e-4


def parameter_difference(a: TrainedSet, b: TrainedSet) -> float:
    """Largest absolute difference between two variants' parameters after the last epoch."""
    return max(float((a.last_parameters[n] - b.last_parameters[n]).abs().max()) for n in a.last_parameters)


def exit_weight_ablation(oracle_dir: str | Path, selection_path: str | Path, out_path: str | Path, *, probe: str,
                         options: dict, settings: dict, thresholds: list[float], seed: int) -> dict:
    """Train `probe` with uniform and decaying exit weights, per-exit and shared parameters, at the
    chosen k; write the measured rows, the parameter differences and the statement."""
    store, splits, record = load_store(oracle_dir, settings, seed)
    top_k = read_json(selection_path)["chosen"]
    num_layers = store.meta["num_layers"]
    started = time.perf_counter()
    variants = [Variant(top_k, scheme, share) for share in SETUPS for scheme in sorted(EXIT_WEIGHT_SCHEMES, reverse=True)]
    sets = train_variants(store, probe, options, variants, splits, settings, seed)
    test = predict(sets, store, splits["test"], settings["batch_size"])
    rows = []
    for i, trained in enumerate(sets):
        result = evaluation(trained, test, i, num_layers, thresholds, seed)
        rows.append({
            "parameters": SETUPS[trained.variant.share_parameters],
            "exit_weights": trained.variant.exit_weights,
            "exit_weight_values": [trained.weights[e] for e in store.exits],
            "selected_epoch": trained.selected_epoch,
            "test_f1": {e: m["f1"] for e, m in result["exits"].items()},
            "test_mean_f1": sum(m["f1"] for m in result["exits"].values()) / len(result["exits"]),
            "test_early_exit": {t: {k: sim[k] for k in ("consistency", "interval", "savings")}
                                for t, sim in result["early_exit"].items()},
        })
    by_name = {(SETUPS[t.variant.share_parameters], t.variant.exit_weights): t for t in sets}
    info = {
        "backbone": store.meta["backbone"],
        "probe": probe,
        "top_k": top_k,
        "thresholds": thresholds,
        "split": record,
        "epochs": settings["epochs"],
        "steps": settings["epochs"] * -(-len(splits["train"]) // settings["batch_size"]),
        "rows": rows,
        "parameter_difference": {setup: parameter_difference(by_name[(setup, "uniform")], by_name[(setup, "decaying")])
                                 for setup in SETUPS.values()},
        "parameter_scale": max(float(p.abs().max()) for p in by_name[("per_exit", "uniform")].last_parameters.values()),
        "seconds": round(time.perf_counter() - started, 1),
    }
    info["statement"] = weight_ablation_statement(info)
    write_json(out_path, info)
    log.info("exit-weight ablation on %s: %s", store.meta["backbone"], info["parameter_difference"])
    return info


def weight_ablation_statement(ablation: dict) -> str:
    """One paragraph on what the measured ablation shows and why, from its own numbers."""
    rows = {(r["parameters"], r["exit_weights"]): r for r in ablation["rows"]}
    diff = ablation["parameter_difference"]
    threshold = str(ablation["thresholds"][0])

    def f1_and_consistency(setup: str) -> str:
        parts = []
        for scheme in ("uniform", "decaying"):
            r = rows[(setup, scheme)]
            sim = r["test_early_exit"][threshold]
            parts.append(f"{scheme} mean test F1 {r['test_mean_f1']:.3f}, simulated consistency "
                         f"{sim['consistency']:.3f} at savings {sim['savings']:.3f} (epoch {r['selected_epoch']})")
        return "; ".join(parts)

    same_epoch = rows[("per_exit", "uniform")]["selected_epoch"] == rows[("per_exit", "decaying")]["selected_epoch"]
    scale = max(ablation["parameter_scale"], 1.0)
    invariant = diff["per_exit"] <= SAME_PARAMETERS * scale
    shared_acts = diff["shared"] > SAME_PARAMETERS * scale
    head = (
        f"Exit-weight ablation ({ablation['backbone']}, {ablation['probe']} classifiers, top-{ablation['top_k']}, "
        f"{ablation['steps']} AdamW steps, threshold {threshold} for the simulated early exit on the test split). "
    )
    if invariant:
        per_exit = (
            f"With one set of parameters per exit, as in the paper, uniform and linearly decaying loss weights end "
            f"{diff['per_exit']:.1e} apart in the largest parameter (parameters up to {ablation['parameter_scale']:.1f}): "
            "each exit's weight only scales its own parameters' gradients and AdamW's update is invariant to that "
            "scale, so the weights cannot change what a classifier learns, only which epoch the weighted validation "
            f"loss keeps ({'the same epoch here' if same_epoch else 'a different epoch here'}): "
        )
    else:
        per_exit = (
            f"With one set of parameters per exit, uniform and decaying weights end {diff['per_exit']:.1e} apart in the "
            f"largest parameter (parameters up to {ablation['parameter_scale']:.1f}), more than AdamW's scale "
            "invariance allows: something other than the weights differs between the runs: "
        )
    shared = (
        f"With one set of parameters shared by every exit the weights {'do' if shared_acts else 'do not'} act "
        f"({diff['shared']:.1e} apart): {f1_and_consistency('shared')}."
    )
    conclusion = (
        " The paper's decaying weights are therefore a no-op for its per-exit classifiers; they matter only for a "
        "shared classifier." if invariant and shared_acts else ""
    )
    return head + per_exit + f"{f1_and_consistency('per_exit')}. " + shared + conclusion
