"""Latency: the prompt's forward is timed apart from the decode steps, where early exit saves."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamax_bench.costs.flops import flops_table
from dynamax_bench.files import read_json
from dynamax_bench.costs.latency import measure_latency
from dynamax_bench.reporting.tables import speedups
from dynamax_bench.spec import latency_spec, task_spec


def test_sample_time_splits_into_first_token_and_decode_steps(
    smoke_config: dict, tiny_mistral, backbone_root: Path, tmp_path: Path
) -> None:
    config = {**smoke_config, "latency": {**smoke_config["latency"], "max_new_tokens": 6}}
    folder = backbone_root / "tiny_mistral"
    flops_table(folder, tmp_path / "flops.json", context_length=config["flops"]["context_length"],
                kinds=config["classifiers"]["kinds"], options=config["classifiers"]["options"],
                exits=config["backbones"]["tiny_mistral"]["exits"])
    result = measure_latency(latency_spec(config, "tiny_mistral", "full"), task_spec(config, config["latency"]["task"]),
                             {"prompts": 2, "repeats": 2, "warmup": 1}, folder, tmp_path / "full.json",
                             tmp_path / "flops.json")
    assert read_json(tmp_path / "full.json") == result
    first, decode, sample = (result[k]["median"] for k in
                             ("seconds_to_first_token", "seconds_per_decode_token", "seconds_per_sample"))
    assert 0 < first < sample and 0 < decode < sample
    assert result["decode_tokens"] == round(result["mean_tokens"] * 4) - 4  # 2 prompts x 2 repeats
    # `full` runs every layer on every decode step: the FLOPs predict no speedup
    assert result["flops_per_decode_token"]["predicted_speedup"] == 1.0


def test_speedup_compares_decode_steps_of_the_same_run() -> None:
    def entry(method: str, decode: float | None) -> dict:
        return {"backbone": "b", "method": method, "seconds_per_token": {"median": 1.0},
                "seconds_per_decode_token": None if decode is None else {"median": decode}}

    got = speedups([entry("full", 0.10), entry("ee-calm-copy-t0.9", 0.05), entry("ee-ffn-copy-t0.9", None)])
    assert got == {("b", "full"): 1.0, ("b", "ee-calm-copy-t0.9"): pytest.approx(2.0)}
