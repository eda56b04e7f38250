"""Training exit classifiers against the oracle store: several variants in one pass over the data.

A variant is one set of classifiers (one per exit) with its own label relaxation (top-k), loss
weights per exit and parameter sharing. Variants trained together see the same batches in the
same order, each with its own optimiser; since no parameter is shared between variants, each
ends exactly where it would have alone (tested), while the store is read once per batch for
all of them. That is how the top-k sweep and the loss-weight ablation stay within the default
profile's CPU budget.

Loss of a variant = sum over exits of w_e * CE(classifier_e, rank_e < k), with per-exit class
weights against the label imbalance. Documents stay whole and in token order, so the stateful
`mamba` kind learns over real sequences. The weights kept are those of the epoch with the lowest
validation loss (0 = untrained).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from torch import Tensor, nn
from tqdm import tqdm

from dynamax_bench.classifiers.kinds import ExitClassifier
from dynamax_bench.classifiers.oracle import OracleStore
from dynamax_bench.classifiers.registry import build_classifier
from dynamax_bench.provenance import environment
from dynamax_bench.runtime import deterministic

log = logging.getLogger(__name__)

EXIT_WEIGHT_SCHEMES = ("decaying", "uniform")


@dataclass(frozen=True)
class Variant:
    """What distinguishes one trained set of classifiers from another in the same pass."""

    top_k: int
    exit_weights: str = "decaying"
    share_parameters: bool = False  # one set of parameters for every exit (per-exit standardisation)

    @property
    def name(self) -> str:
        return f"top{self.top_k}-{self.exit_weights}-{'shared' if self.share_parameters else 'per_exit'}"


@dataclass
class TrainedSet:
    """A variant's classifiers (at the selected epoch) and how they got there."""

    variant: Variant
    classifiers: dict[int, ExitClassifier]
    weights: dict[int, float]
    class_weights: dict[int, Tensor]
    optimizer: torch.optim.Optimizer = field(repr=False)
    curve: list[dict] = field(default_factory=list)
    selected_epoch: int = 0
    initial_validation_loss: float = float("nan")
    last_parameters: dict[str, Tensor] = field(default_factory=dict)  # after the last epoch, before restoring
    environment: dict = field(default_factory=dict)  # where it was trained (provenance.environment)


@dataclass
class Predictions:
    """Logits of every variant and the oracle ranks on one split, token by token in document order."""

    logits: list[dict[int, Tensor]]  # per variant: {exit: (N, 2)}
    ranks: dict[int, Tensor]  # {exit: (N,)} int32
    lengths: list[int]  # tokens per document, to resample whole documents


def exit_weights(num_exits: int, scheme: str) -> list[float]:
    """Loss weight per exit, summing to 1: `decaying` gives the earliest exit the most weight."""
    if scheme == "uniform":
        raw = [1.0] * num_exits
    elif scheme == "decaying":
        raw = [float(num_exits - i) for i in range(num_exits)]
    else:
        raise ValueError(f"distill.exit_weights: unknown scheme {scheme!r}; use one of {EXIT_WEIGHT_SCHEMES}")
    return [w / sum(raw) for w in raw]


def class_weights(positive_rate: float, balance: bool) -> Tensor:
    """CE weights (continue, exit): inverse class frequency ("balanced") when `balance`."""
    if not balance:
        return torch.ones(2)
    p = min(max(positive_rate, 1e-3), 1 - 1e-3)
    return torch.tensor([0.5 / (1 - p), 0.5 / p])


def feature_statistics(store: OracleStore, documents: list[int]) -> dict[int, tuple[Tensor, Tensor]]:
    """Per exit, the per-feature mean and 1/std of `documents` (float32), merged document by
    document in float64 (Chan et al.'s pairwise update), so the split is never in memory at once."""
    stats = {}
    for e in store.exits:
        count, mean, m2 = 0, torch.zeros(store.hidden_size, dtype=torch.float64), torch.zeros(store.hidden_size, dtype=torch.float64)
        for d in documents:
            x = store.hidden(e, d).double()
            n, m = x.shape[0], x.mean(0)
            delta, total = m - mean, count + n
            mean += delta * (n / total)
            m2 += ((x - m) ** 2).sum(0) + delta**2 * (count * n / total)
            count = total
        std = (m2 / max(count - 1, 1)).sqrt()
        stats[e] = (mean.float(), (1.0 / (std + 1e-6)).float())
    return stats


def label_rates(store: OracleStore, documents: list[int], ks: list[int]) -> dict[int, dict[int, float]]:
    """{k: {exit: share of tokens with rank < k}} over `documents`."""
    ranks = {e: torch.cat([store.ranks(e, d) for d in documents]) for e in store.exits}
    return {k: {e: float((r < k).float().mean()) for e, r in ranks.items()} for k in ks}


def tie_parameters(classifiers: list[nn.Module]) -> None:
    """Make every classifier use the first one's parameters (their buffers stay their own)."""
    first = classifiers[0]
    for clf in classifiers[1:]:
        for name, module in clf.named_modules():
            source = first.get_submodule(name)
            for pname, param in list(module.named_parameters(recurse=False)):
                setattr(module, pname, source.get_parameter(pname))


def unique_parameters(classifiers: dict[int, ExitClassifier]) -> list[nn.Parameter]:
    seen, params = set(), []
    for clf in classifiers.values():
        for p in clf.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


def build_set(kind: str, options: dict, exits: list[int], hidden_size: int,
              stats: dict[int, tuple[Tensor, Tensor]], variant: Variant, seed: int) -> dict[int, ExitClassifier]:
    """Fresh classifiers, one per exit, standardised with the training split's statistics. The
    seed is set here, so every variant (and a variant trained alone) starts from the same weights."""
    torch.manual_seed(seed)
    classifiers = {}
    for e in exits:
        clf = build_classifier(kind, hidden_size, options)
        clf.mean.copy_(stats[e][0])
        clf.scale.copy_(stats[e][1])
        classifiers[e] = clf
    if variant.share_parameters:
        tie_parameters(list(classifiers.values()))
    return classifiers


def load_batch(store: OracleStore, documents: list[int]) -> tuple[dict[int, Tensor], dict[int, Tensor], Tensor]:
    """Hidden states (B, T, d) and ranks (B, T) per exit, right-padded, with the (B, T) mask."""
    lengths = [store.length(d) for d in documents]
    width = max(lengths)
    mask = torch.zeros(len(documents), width, dtype=torch.bool)
    for row, length in enumerate(lengths):
        mask[row, :length] = True
    hiddens = {e: torch.zeros(len(documents), width, store.hidden_size) for e in store.exits}
    ranks = {e: torch.zeros(len(documents), width, dtype=torch.int32) for e in store.exits}
    for row, (d, length) in enumerate(zip(documents, lengths)):
        for e in store.exits:
            hiddens[e][row, :length] = store.hidden(e, d)
            ranks[e][row, :length] = store.ranks(e, d)
    return hiddens, ranks, mask


def weighted_loss(trained: TrainedSet, hiddens: dict[int, Tensor], ranks: dict[int, Tensor], mask: Tensor) -> Tensor:
    loss = torch.zeros(())
    for e, clf in trained.classifiers.items():
        labels = (ranks[e][mask] < trained.variant.top_k).long()
        loss = loss + trained.weights[e] * F.cross_entropy(clf(hiddens[e])[mask], labels, weight=trained.class_weights[e])
    return loss


def split_loss(trained: TrainedSet, logits: dict[int, Tensor], ranks: dict[int, Tensor]) -> float:
    """The training objective over a whole split (class-weighted mean CE per exit, weighted sum)."""
    return float(sum(
        trained.weights[e] * F.cross_entropy(logits[e], (ranks[e] < trained.variant.top_k).long(),
                                             weight=trained.class_weights[e])
        for e in trained.classifiers
    ))


@torch.no_grad()
def predict(sets: list[TrainedSet], store: OracleStore, documents: list[int], batch_size: int) -> Predictions:
    """Every variant's logits on `documents` (one read of the store for all of them)."""
    for trained in sets:
        for clf in trained.classifiers.values():
            clf.eval()
    logits: list[dict[int, list[Tensor]]] = [{e: [] for e in store.exits} for _ in sets]
    ranks: dict[int, list[Tensor]] = {e: [] for e in store.exits}
    for start in range(0, len(documents), batch_size):
        hiddens, batch_ranks, mask = load_batch(store, documents[start : start + batch_size])
        for e in store.exits:
            ranks[e].append(batch_ranks[e][mask])
            for out, trained in zip(logits, sets):
                out[e].append(trained.classifiers[e](hiddens[e])[mask].float())
    return Predictions(
        logits=[{e: torch.cat(parts) for e, parts in out.items()} for out in logits],
        ranks={e: torch.cat(parts) for e, parts in ranks.items()},
        lengths=[store.length(d) for d in documents],
    )


def exit_metrics(logits: dict[int, Tensor], ranks: dict[int, Tensor], top_k: int) -> dict[str, dict]:
    """Per exit: label positive rate, and accuracy, precision, recall, F1 at confidence >= 0.5."""
    per_exit = {}
    for e, out in logits.items():
        y = (ranks[e] < top_k).long().numpy()
        p = (out.softmax(-1)[:, 1] >= 0.5).long().numpy()
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
    return per_exit


def snapshot(classifiers: dict[int, ExitClassifier]) -> dict[int, dict[str, Tensor]]:
    return {e: copy.deepcopy(clf.state_dict()) for e, clf in classifiers.items()}


def train_variants(
    store: OracleStore, kind: str, options: dict, variants: list[Variant], splits: dict[str, list[int]],
    settings: dict, seed: int,
) -> list[TrainedSet]:
    """Train every variant of `kind` in one pass per epoch over the training documents; keep each
    variant's epoch of lowest validation loss. Torch's deterministic algorithms are on for the run
    (at the job's thread count), so one machine always trains the same weights."""
    with deterministic():
        sets = _train_variants(store, kind, options, variants, splits, settings, seed)
        for trained in sets:
            trained.environment = environment()
    return sets


def _train_variants(
    store: OracleStore, kind: str, options: dict, variants: list[Variant], splits: dict[str, list[int]],
    settings: dict, seed: int,
) -> list[TrainedSet]:
    train_docs, validation_docs = splits["train"], splits["validation"]
    if not train_docs or not validation_docs:
        raise ValueError(f"{store.path}: need training and validation documents; the corpus has {store.num_documents}")
    stats = feature_statistics(store, train_docs)
    rates = label_rates(store, train_docs, sorted({v.top_k for v in variants}))
    sets = []
    for variant in variants:
        classifiers = build_set(kind, options, store.exits, store.hidden_size, stats, variant, seed)
        optimizer = torch.optim.AdamW(unique_parameters(classifiers), lr=settings["learning_rate"],
                                      weight_decay=settings["weight_decay"])
        sets.append(TrainedSet(
            variant=variant, classifiers=classifiers, optimizer=optimizer,
            weights=dict(zip(store.exits, exit_weights(len(store.exits), variant.exit_weights))),
            class_weights={e: class_weights(rates[variant.top_k][e], settings["balance_classes"]) for e in store.exits},
        ))
    batch_size = settings["batch_size"]
    validation = predict(sets, store, validation_docs, batch_size)
    best = []
    for trained, logits in zip(sets, validation.logits):
        trained.initial_validation_loss = split_loss(trained, logits, validation.ranks)
        best.append((trained.initial_validation_loss, snapshot(trained.classifiers)))
    order = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-len(train_docs) // batch_size)
    names = ", ".join(v.name for v in variants)
    with tqdm(total=settings["epochs"] * steps_per_epoch, desc=f"distill {kind} [{names}]", unit="step") as bar:
        for epoch in range(1, settings["epochs"] + 1):
            for trained in sets:
                for clf in trained.classifiers.values():
                    clf.train()
            perm = [train_docs[i] for i in torch.randperm(len(train_docs), generator=order).tolist()]
            running = [0.0] * len(sets)
            for start in range(0, len(perm), batch_size):
                hiddens, ranks, mask = load_batch(store, perm[start : start + batch_size])
                for i, trained in enumerate(sets):
                    loss = weighted_loss(trained, hiddens, ranks, mask)
                    trained.optimizer.zero_grad()
                    loss.backward()
                    trained.optimizer.step()
                    running[i] += loss.item()
                bar.update()
            validation = predict(sets, store, validation_docs, batch_size)
            for i, (trained, logits) in enumerate(zip(sets, validation.logits)):
                loss = split_loss(trained, logits, validation.ranks)
                trained.curve.append({"epoch": epoch, "train_loss": running[i] / steps_per_epoch, "validation_loss": loss})
                if loss < best[i][0]:
                    best[i] = (loss, snapshot(trained.classifiers))
                    trained.selected_epoch = epoch
    for trained, (_, state) in zip(sets, best):
        trained.last_parameters = {f"{e}.{n}": p.detach().clone() for e, clf in trained.classifiers.items()
                                   for n, p in clf.named_parameters()}
        for e, clf in trained.classifiers.items():
            clf.load_state_dict(state[e])
            clf.eval()
    return sets
