"""Distillation on the smoke backbone: the held-out loss falls and the metrics are recorded."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.classifiers.checkpoints import load_classifiers
from dynamax_bench.classifiers.distill import distill, exit_weights
from dynamax_bench.files import write_jsonl
from dynamax_bench.classifiers.oracle import extract_oracle

SENTENCES = [
    "The river flows past the old mill and into the lake.",
    "Seven children played football in the park after school.",
    "A recipe for bread needs flour, water, salt and yeast.",
    "The library opens at nine and closes at five on weekdays.",
]


def test_exit_weights_decay_linearly_and_sum_to_one() -> None:
    assert exit_weights(4, "decaying") == pytest.approx([0.4, 0.3, 0.2, 0.1])
    assert exit_weights(2, "uniform") == [0.5, 0.5]
    with pytest.raises(ValueError, match="uniform"):
        exit_weights(2, "cubic")


@pytest.fixture(scope="module")
def oracle_dir(tmp_path_factory: pytest.TempPathFactory, smoke_config: dict, tiny_mistral: Backbone) -> Path:
    root = tmp_path_factory.mktemp("distill")
    docs = [{"id": str(i), "text": " ".join(SENTENCES[(i + j) % 4] for j in range(6))} for i in range(20)]
    write_jsonl(root / "corpus.jsonl", docs)
    extract_oracle(smoke_config, tiny_mistral.model.name_or_path, root / "corpus.jsonl", root / "oracle")
    return root / "oracle"


@pytest.mark.parametrize("kind", ["calm", "ffn", "mamba"])
def test_training_lowers_the_heldout_loss(tmp_path: Path, smoke_config: dict, oracle_dir: Path, kind: str) -> None:
    config = copy.deepcopy(smoke_config)
    config["distill"].update(epochs=6, learning_rate=3e-3, heldout_fraction=0.2, batch_size=4)
    info = distill(config, oracle_dir, kind, tmp_path / f"{kind}.safetensors")
    assert info["heldout"]["loss"] < info["heldout_initial"]["loss"] and info["training"]["selected_epoch"] >= 1
    exits = info["heldout"]["exits"]
    assert sorted(exits) == ["4", "5", "6", "7"]
    for metrics in exits.values():
        assert set(metrics) >= {"positive_rate", "accuracy", "precision", "recall", "f1"}
        assert 0.0 <= metrics["f1"] <= 1.0
    loaded, meta = load_classifiers(tmp_path / f"{kind}.safetensors")
    assert sorted(loaded) == [4, 5, 6, 7] and meta["kind"] == kind and len(meta["curve"]) == 6
