"""The `distill` rule: train one classifier kind at every exit of a frozen backbone.

Knowledge distillation against the full model: the oracle store (rule `extract_oracle`) holds,
per exit and corpus token, the hidden state the classifier reads and whether the exit's
greedy token is among the full model's top-k. The loss is the sum over exits of
w_e * cross-entropy(classifier_e, label), w_e decaying linearly with the exit's position
(or uniform), with per-exit class weights against the label imbalance. Documents stay whole and
in token order, so the stateful `mamba` kind learns over real sequences. The weights kept are
those of the epoch with the lowest held-out loss (`training.selected_epoch`; 0 = untrained), so
a kind that overfits the small offline corpus is not penalised for the epochs after its best;
the held-out metrics are therefore on the selection split.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from torch import Tensor
from tqdm import tqdm

from dynamax_bench.classifiers.checkpoints import save_classifiers
from dynamax_bench.classifiers.kinds import ExitClassifier
from dynamax_bench.classifiers.registry import build_classifier
from dynamax_bench.classifiers.oracle import OracleStore

log = logging.getLogger(__name__)


def exit_weights(num_exits: int, scheme: str) -> list[float]:
    """Loss weight per exit, summing to 1: `decaying` gives the earliest exit the most weight."""
    if scheme == "uniform":
        raw = [1.0] * num_exits
    elif scheme == "decaying":
        raw = [float(num_exits - i) for i in range(num_exits)]
    else:
        raise ValueError(f"distill.exit_weights: unknown scheme {scheme!r}; use 'decaying' or 'uniform'")
    return [w / sum(raw) for w in raw]


def class_weights(positive_rate: float, balance: bool) -> Tensor:
    """CE weights (continue, exit): inverse class frequency ("balanced") when `balance`."""
    if not balance:
        return torch.ones(2)
    p = min(max(positive_rate, 1e-3), 1 - 1e-3)
    return torch.tensor([0.5 / (1 - p), 0.5 / p])


def padded_batch(store: OracleStore, documents: list[int], top_k: int) -> tuple[dict[int, Tensor], dict[int, Tensor], Tensor]:
    """Hidden states (B, T, d) and labels (B, T) per exit, right-padded, with the (B, T) mask."""
    lengths = [store.offsets[d + 1] - store.offsets[d] for d in documents]
    width = max(lengths)
    mask = torch.zeros(len(documents), width, dtype=torch.bool)
    for row, length in enumerate(lengths):
        mask[row, :length] = True
    hiddens, labels = {}, {}
    for e in store.exits:
        h = [store.hidden(e, d) for d in documents]
        hiddens[e] = torch.stack([F.pad(x, (0, 0, 0, width - x.shape[0])) for x in h])
        y = [store.labels(e, d, top_k) for d in documents]
        labels[e] = torch.stack([F.pad(x, (0, width - x.shape[0])) for x in y])
    return hiddens, labels, mask


def batch_loss(
    classifiers: dict[int, ExitClassifier], hiddens: dict[int, Tensor], labels: dict[int, Tensor], mask: Tensor,
    weights: dict[int, float], ce_weights: dict[int, Tensor],
) -> Tensor:
    loss = torch.zeros(())
    for e, clf in classifiers.items():
        logits = clf(hiddens[e])[mask]  # (n, 2)
        loss = loss + weights[e] * F.cross_entropy(logits, labels[e][mask], weight=ce_weights[e])
    return loss


@torch.no_grad()
def evaluate(
    classifiers: dict[int, ExitClassifier], store: OracleStore, documents: list[int], top_k: int,
    weights: dict[int, float], ce_weights: dict[int, Tensor], batch_size: int,
) -> dict:
    """Held-out weighted loss, and per exit: positive rate, accuracy, precision, recall, F1 at 0.5."""
    for clf in classifiers.values():
        clf.eval()
    total, count = 0.0, 0
    predicted: dict[int, list[Tensor]] = {e: [] for e in classifiers}
    truth: dict[int, list[Tensor]] = {e: [] for e in classifiers}
    for start in range(0, len(documents), batch_size):
        hiddens, labels, mask = padded_batch(store, documents[start : start + batch_size], top_k)
        n = int(mask.sum())
        total += float(batch_loss(classifiers, hiddens, labels, mask, weights, ce_weights)) * n
        count += n
        for e, clf in classifiers.items():
            confidence = clf(hiddens[e]).softmax(-1)[..., 1][mask]
            predicted[e].append(confidence >= 0.5)
            truth[e].append(labels[e][mask])
    per_exit = {}
    for e in classifiers:
        y, p = torch.cat(truth[e]).numpy(), torch.cat(predicted[e]).long().numpy()
        precision, recall, f1, _ = precision_recall_fscore_support(y, p, average="binary", zero_division=0)
        per_exit[str(e)] = {
            "positive_rate": float(y.mean()),
            "predicted_positive_rate": float(p.mean()),
            "accuracy": float(accuracy_score(y, p)),
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "tokens": int(len(y)),
        }
    return {"loss": total / max(count, 1), "exits": per_exit}


def distill(config: dict, oracle_dir: str | Path, kind: str, out_path: str | Path) -> dict:
    """Train `kind` classifiers at every exit and write them with their held-out metrics."""
    settings = config["distill"]
    options = config["classifiers"].get("options", {}).get(kind, {})
    store = OracleStore(oracle_dir)
    train_docs, heldout_docs = store.documents("train"), store.documents("heldout")
    if not train_docs or not heldout_docs:
        raise ValueError(f"{oracle_dir}: need training and held-out documents; the corpus has {store.meta['num_documents']}")
    top_k = settings["top_k"]
    torch.manual_seed(config["seed"])
    hidden_size = store.tensors[f"hidden.{store.exits[0]}"].shape[1]
    classifiers: dict[int, ExitClassifier] = {}
    ce_weights: dict[int, Tensor] = {}
    for e in store.exits:
        clf = build_classifier(kind, hidden_size, options)
        features = store.split_hidden(e, "train")
        clf.mean.copy_(features.mean(0))
        clf.scale.copy_(1.0 / (features.std(0) + 1e-6))
        classifiers[e] = clf
        rate = float(torch.cat([store.labels(e, d, top_k) for d in train_docs]).float().mean())
        ce_weights[e] = class_weights(rate, settings["balance_classes"])
    weights = dict(zip(store.exits, exit_weights(len(store.exits), settings["exit_weights"])))
    params = [p for clf in classifiers.values() for p in clf.parameters()]
    optimizer = torch.optim.AdamW(params, lr=settings["learning_rate"], weight_decay=settings["weight_decay"])
    batch_size = settings["batch_size"]
    evaluate_args = (store, heldout_docs, top_k, weights, ce_weights, batch_size)
    initial = evaluate(classifiers, *evaluate_args)
    order = torch.Generator().manual_seed(config["seed"])
    steps_per_epoch = -(-len(train_docs) // batch_size)
    curve = []
    best_loss, best_epoch = initial["loss"], 0
    best_state = {e: copy.deepcopy(clf.state_dict()) for e, clf in classifiers.items()}
    started = time.perf_counter()
    with tqdm(total=settings["epochs"] * steps_per_epoch, desc=f"distill {kind}", unit="step") as bar:
        for epoch in range(settings["epochs"]):
            for clf in classifiers.values():
                clf.train()
            perm = [train_docs[i] for i in torch.randperm(len(train_docs), generator=order).tolist()]
            running = 0.0
            for start in range(0, len(perm), batch_size):
                hiddens, labels, mask = padded_batch(store, perm[start : start + batch_size], top_k)
                loss = batch_loss(classifiers, hiddens, labels, mask, weights, ce_weights)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                running += loss.item()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.4f}")
            heldout = evaluate(classifiers, *evaluate_args)
            curve.append({"epoch": epoch + 1, "train_loss": running / steps_per_epoch, "heldout_loss": heldout["loss"]})
            if heldout["loss"] < best_loss:
                best_loss, best_epoch = heldout["loss"], epoch + 1
                best_state = {e: copy.deepcopy(clf.state_dict()) for e, clf in classifiers.items()}
    seconds = time.perf_counter() - started
    for e, clf in classifiers.items():
        clf.load_state_dict(best_state[e])
    final = evaluate(classifiers, *evaluate_args)
    info = {
        "backbone": store.meta["backbone"],
        "num_layers": store.meta["num_layers"],
        "training": {
            "top_k": top_k,
            "exit_weights": {str(e): w for e, w in weights.items()},
            "class_weights": {str(e): w.tolist() for e, w in ce_weights.items()},
            **{k: settings[k] for k in ("epochs", "batch_size", "learning_rate", "weight_decay", "balance_classes")},
            "train_documents": len(train_docs),
            "heldout_documents": len(heldout_docs),
            "train_tokens": sum(store.offsets[d + 1] - store.offsets[d] for d in train_docs),
            "parameters_per_exit": sum(p.numel() for p in classifiers[store.exits[0]].parameters()),
            "seconds": round(seconds, 1),
            "selected_epoch": best_epoch,
        },
        "curve": curve,
        "heldout_initial": initial,
        "heldout": final,
    }
    save_classifiers(out_path, [classifiers[e] for e in store.exits], store.exits, info)
    log.info("distilled %s on %s in %.1f s: held-out loss %.4f -> %.4f", kind, store.meta["backbone"], seconds,
             initial["loss"], final["loss"])
    return info
