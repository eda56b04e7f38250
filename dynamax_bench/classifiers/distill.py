"""The `select_top_k` and `distill` rules: choose the label relaxation, then train each kind at it.

Knowledge distillation against the full model: the oracle store (rule `extract_oracle`) holds,
per exit and corpus token, the hidden state the classifier reads and the rank of the exit's
greedy token among the full model's logits, so a label for top-k is `rank < k`.

`select_top_k` trains the profile's probe kind (the cheapest, `calm` by default) at every
candidate k in one pass over the store and chooses k on the validation split
(dynamax_bench.classifiers.selection); `distill` trains one kind at the chosen k. Both pick the
epoch on the validation split and report the test split, whose documents (and topics, where the
corpus has topics) training never saw. Classifiers are trained, saved and run in float32
whatever the backbone's dtype.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

from dynamax_bench.artefacts import artefact
from dynamax_bench.classifiers.checkpoints import save_classifiers
from dynamax_bench.classifiers.oracle import OracleStore
from dynamax_bench.classifiers.registry import exit_method
from dynamax_bench.classifiers.selection import choose_top_k, simulate_thresholds
from dynamax_bench.classifiers.splits import document_groups, split_documents
from dynamax_bench.classifiers.training import Predictions, TrainedSet, Variant, exit_metrics, predict, split_loss, train_variants
from dynamax_bench.files import read_json, write_json

log = logging.getLogger(__name__)

TRAINING_DTYPE = "float32"  # the dtype classifiers are trained, stored and run in (generation/strategy.py)


def load_store(oracle_dir: str | Path, settings: dict, seed: int) -> tuple[OracleStore, dict[str, list[int]], dict]:
    """The store, its train/validation/test documents, and a record of the split for the JSON."""
    store = OracleStore(oracle_dir)
    groups = document_groups(store.meta["documents"])
    splits = split_documents(groups, settings["validation_fraction"], settings["test_fraction"], seed)
    by_topic = {g.startswith("topic:") for g in groups}
    record = {
        "by": "topic" if by_topic == {True} else "document" if by_topic == {False} else "topic, else document",
        "documents": {s: len(docs) for s, docs in splits.items()},
        "tokens": {s: sum(store.length(d) for d in docs) for s, docs in splits.items()},
        "groups": {s: sorted({groups[d] for d in docs}) for s, docs in splits.items() if s != "train"},
        "train_groups": len({groups[d] for d in splits["train"]}),
        "validation_fraction": settings["validation_fraction"],
        "test_fraction": settings["test_fraction"],
        "seed": seed,
    }
    return store, splits, record


def evaluation(trained: TrainedSet, predictions: Predictions, index: int, num_layers: int, thresholds: list[float],
               seed: int) -> dict:
    """A variant's loss, per-exit label metrics and simulated early exit on one split."""
    logits = predictions.logits[index]
    return {
        "loss": split_loss(trained, logits, predictions.ranks),
        "exits": exit_metrics(logits, predictions.ranks, trained.variant.top_k),
        "early_exit": simulate_thresholds(logits, predictions.ranks, predictions.lengths, num_layers, thresholds, seed),
    }


def training_record(trained: TrainedSet, settings: dict, store: OracleStore, splits: dict[str, list[int]]) -> dict:
    return {
        "top_k": trained.variant.top_k,
        "exit_weights": {str(e): w for e, w in trained.weights.items()},
        "exit_weight_scheme": trained.variant.exit_weights,
        "share_parameters": trained.variant.share_parameters,
        "class_weights": {str(e): w.tolist() for e, w in trained.class_weights.items()},
        **{k: settings[k] for k in ("epochs", "batch_size", "learning_rate", "weight_decay", "balance_classes")},
        "train_tokens": sum(store.length(d) for d in splits["train"]),
        "parameters_per_exit": sum(p.numel() for p in trained.classifiers[store.exits[0]].parameters()),
        "selected_epoch": trained.selected_epoch,
    }


def select_top_k(oracle_dir: str | Path, out_path: str | Path, *, probe: str, options: dict, settings: dict,
                 thresholds: list[float], seed: int) -> dict:
    """Train `probe` at every candidate k (distill.top_k.candidates) in one pass; choose k on validation."""
    store, splits, record = load_store(oracle_dir, settings, seed)
    num_layers = store.meta["num_layers"]
    started = time.perf_counter()
    candidates = sorted(set(settings["top_k"]["candidates"]))
    variants = [Variant(k, settings["exit_weights"], settings["share_parameters"]) for k in candidates]
    sets = train_variants(store, probe, options, variants, splits, settings, seed)
    validation = predict(sets, store, splits["validation"], settings["batch_size"])
    test = predict(sets, store, splits["test"], settings["batch_size"])
    simulated = {t.variant.top_k: simulate_thresholds(validation.logits[i], validation.ranks, validation.lengths,
                                                      num_layers, thresholds, seed) for i, t in enumerate(sets)}
    chosen, decision = choose_top_k(simulated)
    sweep = {
        str(t.variant.top_k): {
            "selected_epoch": t.selected_epoch,
            "validation": {"loss": split_loss(t, validation.logits[i], validation.ranks), "early_exit": simulated[t.variant.top_k]},
            "test": evaluation(t, test, i, num_layers, thresholds, seed),
        }
        for i, t in enumerate(sets)
    }
    info = {"backbone": store.meta["backbone"], "num_layers": num_layers, "exit_positions": store.exits, "probe": probe,
            "options": options, "thresholds": thresholds, "split": record, **decision, "sweep": sweep,
            "seconds": round(time.perf_counter() - started, 1)}
    write_json(out_path, info)
    log.info("top-k on %s: chose k=%d with %s (%s)", store.meta["backbone"], chosen, probe,
             {k: round(v["thresholds"][str(thresholds[0])]["consistency"], 4) for k, v in decision["candidates"].items()})
    return info


def distill(oracle_dir: str | Path, selection_path: str | Path, kind: str, out_path: str | Path, *, options: dict,
            settings: dict, thresholds: list[float], seed: int) -> dict:
    """Train `kind` classifiers at every exit, at the k `select_top_k` chose (a `<kind>_k<K>` variant at its
    K); write them with validation and test metrics."""
    store, splits, record = load_store(oracle_dir, settings, seed)
    selection = read_json(selection_path)
    if selection["split"] != record:
        raise ValueError(f"{selection_path} was chosen on another split than {oracle_dir} gives with these "
                         "distill settings; rerun select_top_k (snakemake --forcerun select_top_k)")
    num_layers = store.meta["num_layers"]
    started = time.perf_counter()
    top_k = exit_method(kind).top_k or selection["chosen"]  # a `<kind>_k<K>` variant keeps its own k
    variant = Variant(top_k, settings["exit_weights"], settings["share_parameters"])
    (trained,) = train_variants(store, kind, options, [variant], splits, settings, seed)
    seconds = time.perf_counter() - started
    validation = predict([trained], store, splits["validation"], settings["batch_size"])
    test = predict([trained], store, splits["test"], settings["batch_size"])
    info = {
        "backbone": store.meta["backbone"],
        "num_layers": num_layers,
        "dtype": TRAINING_DTYPE,
        "training": {**training_record(trained, settings, store, splits), "seconds": round(seconds, 1)},
        "split": record,
        "top_k_selection": {k: selection[k] for k in ("chosen", "reference", "criterion", "candidates", "probe",
                                                      "thresholds", "sweep")},
        "curve": trained.curve,
        "validation_initial_loss": trained.initial_validation_loss,
        "validation": evaluation(trained, validation, 0, num_layers, thresholds, seed),
        "test": evaluation(trained, test, 0, num_layers, thresholds, seed),
        # what the weights were made from and on: the regression gate names a rebuilt store
        "oracle": artefact(store.meta["backbone"], store.digest),
        "environment": trained.environment,
    }
    # one copy per exit: classifiers that share parameters are saved (and loaded) as separate ones
    save_classifiers(out_path, [copy.deepcopy(trained.classifiers[e]) for e in store.exits], store.exits, info,
                     kind=kind)
    log.info("distilled %s on %s at top-%d in %.1f s: validation loss %.4f -> %.4f (epoch %d)", kind,
             store.meta["backbone"], variant.top_k, seconds, trained.initial_validation_loss,
             info["validation"]["loss"], trained.selected_epoch)
    return info
