"""Artefact digests and the gate across a rebuilt artefact: a digest covers a safetensors file's tensors
and nothing else, and a backbone perturbed by one ulp in a copy is named by the gate as rebuilt while
its cells, decoded and scored again by the rules' own functions, pass."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from dynamax_bench.artefacts import safetensors_digest, samples_digest, weights_digest
from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.costs.flops import flops_table
from dynamax_bench.files import read_json
from dynamax_bench.generation.generate import generate_cell, read_generations
from dynamax_bench.generation.tasks import load_samples
from dynamax_bench.reporting.check import compare, format_table, load_reference, main, read_cells
from dynamax_bench.reporting.reference import HASH_FIELD
from dynamax_bench.reporting.score import score_cell
from dynamax_bench.reporting.statistics import IntervalSettings
from dynamax_bench.spec import decode_spec, task_spec


def one_ulp_up(folder: Path) -> str:
    """Move the first weight of the first tensor of a model folder one ulp up, in place; its name."""
    path = folder / "model.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    name = sorted(name for name, t in tensors.items() if t.is_floating_point())[0]
    flat = tensors[name].view(-1)
    flat[0] = torch.nextafter(flat[0], torch.tensor(float("inf")))
    save_file(tensors, str(path), metadata=metadata)
    return name


def test_a_digest_covers_the_tensors_not_the_metadata(tmp_path: Path) -> None:
    tensors = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(4, dtype=torch.int32)}
    save_file(tensors, str(tmp_path / "x.safetensors"), metadata={"format": "pt"})
    save_file(tensors, str(tmp_path / "y.safetensors"), metadata={"written": "elsewhere"})
    assert safetensors_digest(tmp_path / "x.safetensors") == safetensors_digest(tmp_path / "y.safetensors")
    changed = {**tensors, "a": tensors["a"].clone()}
    changed["a"][0, 0] = torch.nextafter(changed["a"][0, 0], torch.tensor(1.0))  # the smallest float above 0
    save_file(changed, str(tmp_path / "z.safetensors"))
    assert safetensors_digest(tmp_path / "z.safetensors") != safetensors_digest(tmp_path / "x.safetensors")
    renamed = {"c" if k == "b" else k: v for k, v in tensors.items()}
    save_file(renamed, str(tmp_path / "w.safetensors"))
    assert safetensors_digest(tmp_path / "w.safetensors") != safetensors_digest(tmp_path / "x.safetensors")


def test_a_folder_digest_covers_every_shard_and_a_damaged_file_is_named(tmp_path: Path) -> None:
    save_file({"a": torch.zeros(3)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"b": torch.zeros(3)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    both = weights_digest(tmp_path)
    save_file({"b": torch.ones(3)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    assert weights_digest(tmp_path) != both
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"\x05")
    with pytest.raises(ValueError, match="model-00002-of-00002.safetensors: not a safetensors file"):
        weights_digest(tmp_path)
    with pytest.raises(FileNotFoundError, match="no .safetensors weights"):
        weights_digest(tmp_path / "none")


def test_the_task_digest_follows_the_samples_generation_and_scoring_read(smoke_config: dict) -> None:
    spec = task_spec(smoke_config, "triviaqa")
    _, samples = load_samples(spec)
    assert samples_digest(samples) == samples_digest(load_samples(spec)[1])
    assert samples_digest(samples[:-1]) != samples_digest(samples)


CELLS = ["tiny_mamba2/triviaqa/full", "tiny_mamba2/triviaqa/prune4"]


def make_run(config: dict, backbone_dir: Path, results: Path) -> Path:
    """The cells of CELLS as the generate, flops and score rules make them, from this backbone folder,
    on the smoke profile's first 3 TriviaQA questions and 8 new tokens (seconds, not minutes)."""
    config = {**config, "tasks": {**config["tasks"], "triviaqa": {**config["tasks"]["triviaqa"], "limit": 3}},
              "generation": {**config["generation"], "max_new_tokens": 8}}
    flops_table(backbone_dir, results / "flops" / "tiny_mamba2.json", context_length=config["flops"]["context_length"],
                kinds=[], options={}, exits=config["backbones"]["tiny_mamba2"]["exits"])
    tasks = task_spec(config, "triviaqa")
    generations = results / "generations" / "tiny_mamba2" / "triviaqa"
    for cell in CELLS:
        method = cell.rsplit("/", 1)[1]
        generate_cell(decode_spec(config, "tiny_mamba2", "triviaqa", method), tasks, backbone_dir,
                      generations / f"{method}.jsonl")
    for cell in CELLS:
        method = cell.rsplit("/", 1)[1]
        score_cell(tasks, generations / f"{method}.jsonl", generations / "full.jsonl", backbone_dir,
                   results / "flops" / "tiny_mamba2.json", results / "cells" / f"{cell}.json", profile="smoke",
                   evidence=IntervalSettings.from_dict(config["evidence"]))
    return results


def test_a_backbone_one_ulp_off_is_named_rebuilt_and_its_cells_pass(smoke_config: dict, tiny_mamba2: Backbone,
                                                                    tmp_path: Path, capsys) -> None:
    """Issue 38: a backbone trained on another processor. Its digest names it, once, as rebuilt; the
    hashes of cells it decoded otherwise are not gated and their moved numbers are judged by their
    intervals (here one ulp moves no token: every number stays exact, every cell passes)."""
    original = Path(tiny_mamba2.model.name_or_path)
    first = make_run(smoke_config, original, tmp_path / "first")
    header, _ = read_generations(first / "generations" / "tiny_mamba2" / "triviaqa" / "full.jsonl")
    assert header["artefacts"]["backbone"] == {"name": "tiny_mamba2", "sha256": weights_digest(original)}
    cell = read_json(first / "cells" / "tiny_mamba2" / "triviaqa" / "full.json")
    assert set(cell["artefacts"]) == {"backbone", "task"} and cell["artefacts"]["task"]["name"] == "triviaqa"
    reference = tmp_path / "reference.json"
    assert main([str(first), str(reference), "--regenerate", "--reason", "first run"]) == 0
    assert load_reference(reference)["cells"][CELLS[0]]["artefacts.backbone"] == weights_digest(original)

    copy = tmp_path / "rebuilt" / "tiny_mamba2"
    shutil.copytree(original, copy)
    one_ulp_up(copy)
    assert weights_digest(copy) != weights_digest(original)
    second = make_run(smoke_config, copy, tmp_path / "second")
    rows = compare(read_cells(second), load_reference(reference))
    assert [r for r in rows if r.status == "FAIL"] == []
    rebuilt = [r for r in rows if r.status == "rebuilt"]
    assert [(r.cell, r.value) for r in rebuilt] == [("(tiny_mamba2 backbone)", weights_digest(copy))]
    assert all(r.status in ("pass", "unchecked") for r in rows if r.path == HASH_FIELD)
    table = format_table(rows)
    assert table.count("tiny_mamba2 backbone rebuilt: weights differ from the reference's; of its 2 cells") == 1
    assert main([str(second), str(reference)]) == 0
    capsys.readouterr()
