"""The distilled Mamba-2 backbone: training lowers held-out loss, and an interrupted run resumes the same run."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import pytest
import torch

from dynamax_bench.artefacts import weights_digest
from dynamax_bench.backbones.prepare import Backbone, load_backbone
from dynamax_bench.config import ConfigError
from dynamax_bench.profile_checks import validate_profile
from dynamax_bench.files import read_json, read_jsonl, write_jsonl
from dynamax_bench.backbones.train_mamba2 import CHECKPOINT_FILE, TRAINING_FILE, distillation_loss, train_distilled_backbone


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real English: the paragraphs of the project's CoQA stories, one document each."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    paragraphs = [p for record in read_jsonl(str(resources.files("dynamax_bench.data") / "coqa.jsonl")) for p in record["story"].split("\n") if p.strip()]
    write_jsonl(path, [{"id": str(i), "text": text, "source": "coqa"} for i, text in enumerate(paragraphs)])
    return path


def _train(config: dict, teacher: Backbone, corpus: Path, root: Path, **kwargs) -> dict:
    return train_distilled_backbone(
        "tiny_mamba2", config["backbones"]["tiny_mamba2"], teacher.model.name_or_path, corpus,
        root / "backbone", root / "work", seed=config["seed"], **kwargs,
    )


def test_smoke_recipe_lowers_heldout_loss(smoke_config: dict, tiny_mistral: Backbone, corpus: Path, tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        record = _train(smoke_config, tiny_mistral, corpus, tmp_path)
        assert torch.get_num_threads() == 2 and not torch.are_deterministic_algorithms_enabled()  # restored
    finally:
        torch.set_num_threads(threads)
    # trained at the profile's own thread count, deterministically, and says where
    environment = record["environment"]
    assert environment["threads"] == smoke_config["backbones"]["tiny_mamba2"]["source"]["training"]["threads"] == 1
    assert environment["deterministic_algorithms"] and environment["torch"] == torch.__version__
    assert {"cpu_flags", "cpu_capability", "blas", "machine"} <= set(environment)
    heldout = record["heldout"]
    assert heldout["student_loss"] < heldout["random_init_loss"] - 1.0, heldout
    assert record["steps_done"] == 16 and record["stopped_by"] == "steps"
    assert [e["step"] for e in record["curve"] if "heldout_loss" in e] == [0, 4, 8, 12, 16]
    student = load_backbone(tmp_path / "backbone")
    assert student.family == "mamba2" and student.num_layers == 8
    assert student.meta["label"] == smoke_config["backbones"]["tiny_mamba2"]["label"]
    assert student.meta["training"]["heldout"] == heldout
    assert read_json(tmp_path / "backbone" / TRAINING_FILE)["curve"] == record["curve"]
    assert not (tmp_path / "work" / CHECKPOINT_FILE).exists(), "a finished run keeps no checkpoint"


def test_interrupted_run_resumes_where_it_stopped(
    smoke_config: dict, tiny_mistral: Backbone, corpus: Path, tmp_path: Path
) -> None:
    whole = _train(smoke_config, tiny_mistral, corpus, tmp_path / "whole")

    def interrupt(step: int, loss: float) -> None:
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(smoke_config, tiny_mistral, corpus, tmp_path / "split", on_step=interrupt)
    assert not (tmp_path / "split" / "backbone").exists(), "an interrupted run leaves no backbone folder"
    assert (tmp_path / "split" / "work" / CHECKPOINT_FILE).exists()

    steps_seen: list[int] = []
    resumed = _train(smoke_config, tiny_mistral, corpus, tmp_path / "split", on_step=lambda s, _: steps_seen.append(s))
    assert steps_seen == list(range(5, 17)), "resumes after the checkpoint of step 4"
    assert resumed["steps_done"] == whole["steps_done"] == 16
    assert [e["step"] for e in resumed["curve"]] == [e["step"] for e in whole["curve"]]
    assert resumed["heldout"]["student_loss"] == whole["heldout"]["student_loss"]
    # bit for bit on one machine: same batches, same schedule, deterministic kernels at a fixed thread count
    assert weights_digest(tmp_path / "split" / "backbone") == weights_digest(tmp_path / "whole" / "backbone")


def test_changed_recipe_does_not_resume_a_stale_checkpoint(
    smoke_config: dict, tiny_mistral: Backbone, corpus: Path, tmp_path: Path
) -> None:
    def interrupt(step: int, loss: float) -> None:
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(smoke_config, tiny_mistral, corpus, tmp_path, on_step=interrupt)
    changed = copy.deepcopy(smoke_config)
    changed["backbones"]["tiny_mamba2"]["source"]["training"]["lr"] = 0.001
    steps_seen: list[int] = []
    _train(changed, tiny_mistral, corpus, tmp_path, on_step=lambda s, _: steps_seen.append(s))
    assert steps_seen[0] == 1


def test_distillation_loss_is_zero_only_when_the_student_matches() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    tokens = torch.randint(0, 11, (2, 5))
    teacher = torch.log_softmax(logits, -1).topk(11, -1)
    _, kl, _ = distillation_loss(logits, tokens, teacher.values, teacher.indices, 0.5)
    assert kl.item() == pytest.approx(0.0, abs=1e-6)
    _, kl_other, ce = distillation_loss(torch.randn(2, 5, 11), tokens, teacher.values, teacher.indices, 0.5)
    assert kl_other.item() > 0.1
    loss, kl_only, _ = distillation_loss(logits, tokens, teacher.values, teacher.indices, 1.0)
    assert loss.item() == pytest.approx(kl_only.item())


def test_teacher_must_be_a_transformer_of_the_profile(smoke_config: dict) -> None:
    config = copy.deepcopy(smoke_config)
    config["backbones"]["tiny_mamba2"]["source"]["teacher"] = "tiny_mamba2"
    with pytest.raises(ConfigError, match=r"backbones.tiny_mamba2.source.teacher: 'tiny_mamba2' must name a transformer"):
        validate_profile(config)
