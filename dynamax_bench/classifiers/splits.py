"""Train / validation / test splits of the distillation corpus, by topic where it has topics.

Validation picks the epoch and the top-k relaxation; test is only reported (Table 2). Documents
on one topic share vocabulary and phrasing, so a test document whose topic was trained on is not
held out in any useful sense: every topic goes whole to one split. A corpus without topics
(FineWeb-Edu) is split by document. The assignment is a seeded permutation of the sorted group
names, so it depends on the seed and the groups only, not on the order of the corpus.
"""

from __future__ import annotations

import torch

SPLITS = ("train", "validation", "test")


def document_groups(documents: list[dict]) -> list[str]:
    """The split unit of every document: its topic, or the document itself when it has none."""
    return [f"topic:{d['topic']}" if d.get("topic") else f"document:{d['id']}" for d in documents]


def split_documents(groups: list[str], validation_fraction: float, test_fraction: float, seed: int) -> dict[str, list[int]]:
    """{split: document indices}; validation and test each get round(G * fraction) of the G
    groups (at least one), train the rest."""
    names = sorted(set(groups))
    n_validation = max(1, round(len(names) * validation_fraction))
    n_test = max(1, round(len(names) * test_fraction))
    if len(names) - n_validation - n_test < 1:
        raise ValueError(
            f"the corpus has {len(names)} topics/documents: too few for {n_validation} validation, {n_test} test "
            "and at least one training group; grow the corpus (corpus.sources) or lower "
            "distill.validation_fraction / distill.test_fraction"
        )
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
    split_of = {}
    for position, index in enumerate(order):
        split_of[names[index]] = "test" if position < n_test else "validation" if position < n_test + n_validation else "train"
    return {split: [i for i, g in enumerate(groups) if split_of[g] == split] for split in SPLITS}
