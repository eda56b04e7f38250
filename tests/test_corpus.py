"""The distillation corpus: seeded generation, local JSONL, the character budget, clear errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from dynamax_bench.config import ConfigError
from dynamax_bench.profile_checks import validate_profile
from dynamax_bench.corpus import prepare_corpus
from dynamax_bench.files import read_jsonl

from .conftest import shared_data


def test_generated_corpus_is_seeded(smoke_config: dict, tiny_mistral, backbone_root: Path, tmp_path: Path) -> None:
    dirs = {"tiny_mistral": str(backbone_root / "tiny_mistral")}
    config = copy.deepcopy(smoke_config)
    config["corpus"]["sources"][0]["num_documents"] = 3
    prepare_corpus(config["corpus"], config["seed"], tmp_path / "a.jsonl", dirs)
    prepare_corpus(config["corpus"], config["seed"], tmp_path / "b.jsonl", dirs)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    records = read_jsonl(tmp_path / "a.jsonl")
    assert len(records) == 3
    assert records[0]["text"].startswith("Write a short encyclopedia article about photosynthesis.")
    assert [r["topic"] for r in records] == ["photosynthesis", "the water cycle", "volcanoes"]


def test_local_source_and_budget(smoke_config: dict, tmp_path: Path) -> None:
    path = shared_data("fineweb_edu.sample.jsonl")
    config = copy.deepcopy(smoke_config)
    config["corpus"] = {"max_chars": 5000, "sources": [{"kind": "local", "path": str(path)}]}
    prepare_corpus(config["corpus"], config["seed"], tmp_path / "c.jsonl", {})
    records = read_jsonl(tmp_path / "c.jsonl")
    assert sum(len(r["text"]) for r in records) == 5000
    assert records[0]["id"] == "fwe-s10bt-000"


def test_local_record_without_text_is_named(smoke_config: dict, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"body": "no text field"}) + "\n")
    config = copy.deepcopy(smoke_config)
    config["corpus"] = {"max_chars": 100, "sources": [{"kind": "local", "path": str(bad)}]}
    with pytest.raises(ValueError, match=r"bad.jsonl:2: missing text field 'text'"):
        prepare_corpus(config["corpus"], config["seed"], tmp_path / "out.jsonl", {})
    assert not (tmp_path / "out.jsonl").exists()


def test_generator_must_be_a_transformer_backbone(smoke_config: dict) -> None:
    config = copy.deepcopy(smoke_config)
    config["corpus"]["sources"][0]["backbone"] = "tiny_mamba2"
    with pytest.raises(ConfigError, match=r"corpus.sources\[0\].backbone"):
        validate_profile(config)
