"""Distillation splits: whole topics per split, by document without topics, seeded, clear errors."""

from __future__ import annotations

import pytest

from dynamax_bench.classifiers.splits import document_groups, split_documents


def test_every_topic_goes_whole_to_one_split() -> None:
    documents = [{"id": str(i), "topic": f"t{i % 8}"} for i in range(24)]
    groups = document_groups(documents)
    splits = split_documents(groups, 0.125, 0.25, seed=7)
    topics = {s: {groups[d] for d in docs} for s, docs in splits.items()}
    assert len(topics["validation"]) == 1 and len(topics["test"]) == 2 and len(topics["train"]) == 5
    assert sum(len(docs) for docs in splits.values()) == 24
    assert topics["test"].isdisjoint(topics["train"] | topics["validation"])
    assert split_documents(groups, 0.125, 0.25, seed=7) == splits
    assert split_documents(list(reversed(groups)), 0.125, 0.25, seed=7)["test"] == [23 - d for d in reversed(splits["test"])]


def test_without_topics_the_documents_are_the_groups() -> None:
    groups = document_groups([{"id": f"d{i}"} for i in range(10)] + [{"id": "x", "topic": "sea"}])
    assert groups[0] == "document:d0" and groups[-1] == "topic:sea"
    splits = split_documents(groups, 0.1, 0.1, seed=0)
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [9, 1, 1]


def test_too_few_groups_name_the_settings() -> None:
    with pytest.raises(ValueError, match="distill.validation_fraction"):
        split_documents(["topic:a", "topic:b"], 0.1, 0.1, seed=0)
