"""Latency: the model's work alone, the first token timed apart from the decode steps."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

import dynamax_bench.costs.latency as latency
from dynamax_bench.classifiers.checkpoints import save_classifiers
from dynamax_bench.classifiers.kinds import MambaClassifier
from dynamax_bench.classifiers.registry import build_classifier
from dynamax_bench.config import exit_positions
from dynamax_bench.costs.flops import flops_table
from dynamax_bench.costs.latency import measure_latency
from dynamax_bench.files import read_json
from dynamax_bench.generation.decoder import Decoder
from dynamax_bench.generation.tasks import load_samples
from dynamax_bench.reporting.speedups import speedups
from dynamax_bench.reporting.statistics import IntervalSettings
from dynamax_bench.reporting.tables.main_results import batched_speedups, main_results
from dynamax_bench.spec import latency_spec, parse_method, task_spec
from tests.cells import make_cell, share


@pytest.fixture(scope="module")
def flops_json(smoke_config: dict, tiny_mistral, backbone_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("latency") / "flops.json"
    flops_table(backbone_root / "tiny_mistral", path, context_length=smoke_config["flops"]["context_length"],
                kinds=smoke_config["classifiers"]["kinds"], options=smoke_config["classifiers"]["options"],
                exits=smoke_config["backbones"]["tiny_mistral"]["exits"])
    return path


def test_sample_time_splits_into_first_token_and_decode_steps(
    smoke_config: dict, backbone_root: Path, flops_json: Path, tmp_path: Path
) -> None:
    config = {**smoke_config, "latency": {**smoke_config["latency"], "max_new_tokens": 6}}
    result = measure_latency(latency_spec(config, "tiny_mistral", "full"), task_spec(config, config["latency"]["task"]),
                             {"prompts": 2, "repeats": 2, "warmup": 2}, backbone_root / "tiny_mistral",
                             tmp_path / "full.json", flops_json)
    assert read_json(tmp_path / "full.json") == result
    first, decode, sample = (result[k]["median"] for k in
                             ("seconds_to_first_token", "seconds_per_decode_token", "seconds_per_sample"))
    assert 0 < first < sample and 0 < decode < sample
    # one run split in two: never a negative decode step (two runs' difference could be)
    assert result["seconds_per_decode_token"]["min"] > 0
    assert result["decode_tokens"] == round(result["mean_tokens"] * 4) - 4  # 2 prompts x 2 repeats
    # `full` runs every layer on every decode step: the FLOPs predict no speedup
    assert result["flops_per_decode_token"]["predicted_speedup"] == 1.0


def test_the_clock_sees_token_ids_only_and_the_first_token_run_includes_the_classifier_prompt_pass(
    smoke_config: dict, backbone_root: Path, flops_json: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside every timed window: no tokenisation, and the stateful classifier's pass over the whole
    prompt at every exit, before the clock's mark at the first token (time to first token holds it)."""
    torch.manual_seed(0)
    exits = exit_positions(smoke_config["backbones"]["tiny_mistral"], 8)
    checkpoint = tmp_path / "mamba.safetensors"
    save_classifiers(checkpoint, [build_classifier("mamba", 64, smoke_config["classifiers"]["options"]["mamba"])
                                  for _ in exits], exits, {})
    timing, windows = [False], []
    encode = transformers.PreTrainedTokenizerBase.__call__

    def tokenise(self, *args, **kwargs):
        assert not timing[0], "a prompt was tokenised inside the timed window"
        return encode(self, *args, **kwargs)

    def prompt_passes(module, args) -> None:
        if timing[0] and isinstance(module, MambaClassifier) and args[0].shape[1] > 1:
            windows[-1]["prompt_passes"] += 1

    class Clock(latency.Clock):
        def mark(self) -> None:
            windows[-1]["passes_before_mark"] = windows[-1]["prompt_passes"]
            super().mark()

        def run(self, fn):
            timing[0] = True
            windows.append({"prompt_passes": 0})
            try:
                seconds, marks, out = super().run(fn)
            finally:
                timing[0] = False
            windows[-1]["tokens"] = len(out.token_ids)
            windows[-1]["marks"] = marks
            assert len(marks) == 1 and 0 < marks[0] < seconds
            return seconds, marks, out

    monkeypatch.setattr(transformers.PreTrainedTokenizerBase, "__call__", tokenise)
    monkeypatch.setattr(latency, "Clock", Clock)
    hook = torch.nn.modules.module.register_module_forward_pre_hook(prompt_passes)
    try:
        config = {**smoke_config, "latency": {**smoke_config["latency"], "max_new_tokens": 3}}
        measure_latency(latency_spec(config, "tiny_mistral", "ee-mamba-copy-t0.5"),
                        task_spec(config, config["latency"]["task"]), {"prompts": 1, "repeats": 2, "warmup": 2},
                        backbone_root / "tiny_mistral", tmp_path / "ee.json", flops_json, checkpoint)
    finally:
        hook.remove()
    # one run per prompt and repeat, split inside it, each beside one of `full`: repeat 0 the method first,
    # repeat 1 `full` first
    mine, full = [windows[0], windows[3]], [windows[1], windows[2]]
    assert len(windows) == 4 and [w["tokens"] for w in mine] == [3, 3]
    # the classifier's prompt pass is in the method's window and before the first-token mark
    assert all(w["prompt_passes"] == w["passes_before_mark"] == len(exits) for w in mine)
    assert all(w["prompt_passes"] == 0 for w in full)


def timed(method: str, decode: list[list[float]], reference: list[list[float]] | None = None,
          rate: float | None = None, reference_rate: float | None = None) -> dict:
    """A latency file's fields the speedups read: its decode-step times (per prompt, per repeat) and those of
    `full` timed beside it; its batch-16 rate and `full`'s."""
    def spread(value: float | None) -> dict | None:
        return None if value is None else {"median": value}

    throughput = {"batch_size": 16, "decode_tokens_per_second": spread(rate),
                  "reference": None if reference_rate is None else {"decode_tokens_per_second": spread(reference_rate)}}
    def step(times: list[list[float]]) -> dict | None:
        flat = [t for each in times for t in each]
        return {"median": float(np.median(flat))} if flat else None

    return {"backbone": "b", "method": method, "spec": {"method": asdict(parse_method(method))},
            "decode_seconds": decode, "seconds_per_decode_token": step(decode),
            "reference": None if reference is None else {"decode_seconds": reference,
                                                         "seconds_per_decode_token": step(reference)},
            "flops_per_decode_token": {"predicted_speedup": 1.0},
            "throughput": throughput if rate is not None or reference_rate is not None else None}


def test_speedup_pairs_each_run_with_the_full_run_beside_it() -> None:
    """The reference's decode time over the method's, summed over the pairs both timed (prompt, repeat), the
    interval resampling prompts with their repeats; `full` is its own reference."""
    full = [[0.10, 0.12], [0.20, 0.22], [0.30, 0.32], [0.40, 0.42]]
    got = speedups([timed("full", full),
                    timed("ee-calm-copy-t0.9", [[0.05, 0.07], [0.10], [], [0.20, 0.20]],
                          [[0.11, 0.13], [0.21, 0.23], [0.31, 0.33], [0.41, 0.43]]),
                    timed("ee-ffn-copy-t0.9", [[0.05]] * 4),  # no reference timed beside it: no speedup
                    timed("ee-mamba-copy-t0.9", [[0.05]] * 4, [[], [], [], []])],
                   IntervalSettings(resamples=400))
    assert set(got) == {("b", "full"), ("b", "ee-calm-copy-t0.9")}
    assert got[("b", "full")]["value"] == pytest.approx(1.0)
    calm = got[("b", "ee-calm-copy-t0.9")]
    # pairs: prompt 0 both repeats, prompt 1 its first repeat, prompt 3 both; prompt 2 stopped at its first token
    assert calm["value"] == pytest.approx((0.11 + 0.13 + 0.21 + 0.41 + 0.43) / (0.05 + 0.07 + 0.10 + 0.20 + 0.20))
    assert calm["n"] == 5 and calm["groups"] == 3
    assert calm["lo"] < calm["value"] < calm["hi"]
    # the same runs against the other job's `full` would be another number: the pairing is by file
    assert calm["value"] != pytest.approx(sum(map(sum, full[:2])) / 0.62)


@pytest.mark.parametrize("method", ["full", "ee-maxsoftmax-copy-t0.5"])
def test_throughput_counts_the_decode_tokens_of_one_batch(smoke_config: dict, backbone_root: Path, flops_json: Path,
                                                          tmp_path: Path, method: str) -> None:
    """Decode tokens: every row's tokens but its first, those the batch-1 reference makes (the batched
    engine is exact to it, its untimed prompt pass sharing the prompts' prefix); the rate is over the
    batch's time after its first tokens."""
    config = {**smoke_config, "latency": {**smoke_config["latency"], "max_new_tokens": 5}}
    spec, task = latency_spec(config, "tiny_mistral", method), task_spec(config, config["latency"]["task"])
    result = measure_latency(spec, task, {"prompts": 1, "repeats": 2, "warmup": 2, "throughput_batch": 3},
                             backbone_root / "tiny_mistral", tmp_path / "t.json", flops_json)
    throughput = result["throughput"]
    decoder = Decoder.load(spec, backbone_root / "tiny_mistral")
    loaded, samples = load_samples(task)
    reference = decoder.generator(loaded.stop_strings, 5)
    expected = sum(len(reference.generate(s.prompt, decoder.strategy).token_ids) - 1 for s in samples[:3])
    assert throughput["batch_size"] == 3 and throughput["repeats"] == 2 and throughput["prefix_cache"]
    assert throughput["decode_tokens"] == expected > 0
    rate, batch, first = (throughput[k]["median"] for k in
                          ("decode_tokens_per_second", "seconds_per_batch", "seconds_to_first_tokens"))
    assert 0 < first < batch
    assert rate >= expected / batch  # the first tokens' time is not in the decode rate


def test_batched_speedup_is_tokens_per_second_over_the_full_batches_timed_beside_it() -> None:
    latency = [timed("full", [[0.1]], rate=100.0), timed("ee-calm-copy-t0.9", [[0.1]], [[0.1]], 150.0, 120.0),
               timed("ee-ffn-copy-t0.9", [[0.1]], [[0.1]], None, 120.0), timed("ee-mamba-copy-t0.9", [[0.1]], rate=90.0)]
    # calm over the full batches of its own job (120), not over the full job's (100); mamba has no reference
    assert batched_speedups(latency) == {("b", "full"): 1.0, ("b", "ee-calm-copy-t0.9"): pytest.approx(1.25)}
    cells = [make_cell(method, share(12, 12)) for method in ("full", "ee-calm-copy-t0.9", "ee-ffn-copy-t0.9")]
    for cell in cells:
        cell["backbone"] = "b"
    table = main_results(cells, latency[:3])
    assert table["speedup batch 16"].tolist()[:2] == [1.0, pytest.approx(1.25)]
    assert table["speedup batch 16"].isna().tolist()[2]  # nothing decoded past the first tokens


def batch1_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The methods' names, in the order their batch-1 runs start (Decoder.batch1's runners, counted)."""
    runs: list[str] = []
    batch1 = Decoder.batch1

    def tagged(self: Decoder, *args, **kwargs):
        run = batch1(self, *args, **kwargs)

        def counted(ids, on_first_token=None):
            runs.append(self.spec.method.name)
            return run(ids, on_first_token=on_first_token)
        return counted

    monkeypatch.setattr(Decoder, "batch1", tagged)
    return runs


def test_each_method_run_is_timed_next_to_a_full_run_of_the_same_prompt(
    smoke_config: dict, backbone_root: Path, flops_json: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warm-up and every (repeat, prompt) run the method and `full` in turn, which first alternating; the file
    keeps both sides' decode-step times by prompt and repeat. `full`'s own job times nothing beside it."""
    runs = batch1_runs(monkeypatch)
    config = {**smoke_config, "latency": {**smoke_config["latency"], "max_new_tokens": 4}}
    task, settings = task_spec(config, config["latency"]["task"]), {"prompts": 2, "repeats": 2, "warmup": 2}
    method = "ee-maxsoftmax-copy-t0.5"
    result = measure_latency(latency_spec(config, "tiny_mistral", method), task, settings,
                             backbone_root / "tiny_mistral", tmp_path / "ee.json", flops_json)
    m, f = method, "full"
    assert runs == [m, f, m, f,  # warm-up
                    m, f, f, m,  # repeat 0: prompt 0, prompt 1
                    f, m, m, f]  # repeat 1
    reference = result["reference"]
    assert reference["method"] == "full"
    for times in (result["decode_seconds"], reference["decode_seconds"]):
        assert [len(t) for t in times] == [2, 2] and all(s > 0 for t in times for s in t)  # 4 tokens: 3 steps
    flat = sorted(s for t in result["decode_seconds"] for s in t)
    assert result["seconds_per_decode_token"]["median"] == pytest.approx((flat[1] + flat[2]) / 2)
    runs.clear()
    alone = measure_latency(latency_spec(config, "tiny_mistral", "full"), task, settings,
                            backbone_root / "tiny_mistral", tmp_path / "full.json", flops_json)
    assert runs == ["full"] * 6 and alone["reference"] is None


def test_a_latency_sweep_times_each_method_as_its_own_job_would(smoke_config: dict, backbone_root: Path,
                                                               flops_json: Path, tmp_path: Path) -> None:
    """One job, several methods (latency_sweep): one file per method, in order, each with its own spec
    and warm-up, and what is not a timing (tokens, exit traces, FLOPs) equal to the method's own job."""
    config = {**smoke_config, "latency": {**smoke_config["latency"], "max_new_tokens": 4}}
    methods = ["ee-maxsoftmax-copy-t0.5", "ee-maxsoftmax-partial-t0.9"]
    specs = [latency_spec(config, "tiny_mistral", m) for m in methods]
    task, settings = task_spec(config, config["latency"]["task"]), {"prompts": 2, "repeats": 2, "warmup": 2}
    paths = [tmp_path / f"{m}.json" for m in methods]
    swept = latency.measure_latencies(specs, task, settings, backbone_root / "tiny_mistral", paths, flops_json)
    for spec, path, result in zip(specs, paths, swept):
        alone = measure_latency(spec, task, settings, backbone_root / "tiny_mistral", tmp_path / "alone.json",
                                flops_json)
        assert read_json(path) == result and result["method"] == spec.method.name
        for key in ("spec", "mean_tokens", "decode_tokens", "flops_per_decode_token", "warmup", "repeats"):
            assert result[key] == alone[key], key
    with pytest.raises(ValueError, match="2 decode specs but 1 output files"):
        latency.measure_latencies(specs, task, settings, backbone_root / "tiny_mistral", paths[:1], flops_json)


def test_a_sweep_times_full_once_per_round_beside_every_method(
    smoke_config: dict, backbone_root: Path, flops_json: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A latency sweep's methods and `full` take turns: each (repeat, prompt) has one run of `full` and one of
    each method, the order rotating; every file of the job pairs its runs with those same `full` runs, at
    batch 1 and in the throughput's rounds."""
    runs, batches = batch1_runs(monkeypatch), []
    batched = Decoder.batched_generator

    def tagged_batches(self: Decoder, *args, **kwargs):
        engine = batched(self, *args, **kwargs)
        generate = engine.generate

        def counted(*a, **k):
            batches.append(self.spec.method.name)
            return generate(*a, **k)
        engine.generate = counted
        return engine

    monkeypatch.setattr(Decoder, "batched_generator", tagged_batches)
    config = {**smoke_config, "latency": {**smoke_config["latency"], "max_new_tokens": 4}}
    a, b, f = "ee-maxsoftmax-copy-t0.5", "ee-calm-copy-t0.9", "full"
    specs = [latency_spec(config, "tiny_mistral", m) for m in (a, b)]
    task = task_spec(config, config["latency"]["task"])
    settings = {"prompts": 2, "repeats": 2, "warmup": 1, "throughput_batch": 2}
    exits = exit_positions(smoke_config["backbones"]["tiny_mistral"], 8)
    torch.manual_seed(0)
    save_classifiers(tmp_path / "calm.safetensors", [build_classifier("calm", 64, {}) for _ in exits], exits, {})
    swept = latency.measure_latencies(specs, task, settings, backbone_root / "tiny_mistral",
                                      [tmp_path / "a.json", tmp_path / "b.json"], flops_json, tmp_path)
    assert runs == [a, b, f,  # warm-up
                    a, b, f, b, f, a,  # repeat 0: prompt 0 (turn 0), prompt 1 (turn 1)
                    b, f, a, f, a, b]  # repeat 1: turns 1 and 2
    assert batches == [a, b, f,  # warm-up: the first computes the prompt pass the three share
                       a, b, f, b, f, a]  # one round per repeat
    first, second = (result["reference"] for result in swept)
    assert first["decode_seconds"] == second["decode_seconds"]  # the same runs of `full`
    assert [len(t) for t in first["decode_seconds"]] == [2, 2]
    assert swept[0]["decode_seconds"] != first["decode_seconds"]
    assert swept[0]["throughput"]["reference"] == swept[1]["throughput"]["reference"]
    assert swept[0]["throughput"]["reference"]["method"] == "full"


def test_two_runs_compare_by_speedup_ratio_and_interval_overlap() -> None:
    """benchmarks/latency_stability.py: the second run's speedup over the first's, whether their intervals
    overlap, and `full`'s own decode step in every job (its file and each method's reference)."""
    from benchmarks.latency_stability import compare

    def run(scale: float, full_step: float) -> list[dict]:
        full = [[full_step * (1 + p / 10)] * 3 for p in range(4)]
        mine = [[t * scale / 2 for t in times] for times in full]
        return [timed("full", full), timed("ee-calm-copy-t0.9", mine, full, rate=150.0, reference_rate=100.0)]

    same = compare([run(1.0, 0.1), run(1.0, 0.2)], IntervalSettings(resamples=200))
    (row,) = same["rows"]
    # full twice as slow in the second run, the method likewise: the paired speedup does not move
    assert row["ratio"] == pytest.approx(1.0) and row["overlap"] and same["intervals_overlapping"] == 1
    assert row["batched_speedup"] == [pytest.approx(1.5), pytest.approx(1.5)]
    assert same["full_seconds_per_decode_step"][1]["b"]["jobs"] == 2
    moved = compare([run(1.0, 0.1), run(1.25, 0.1)], IntervalSettings(resamples=200))
    assert moved["rows"][0]["ratio"] == pytest.approx(0.8) and moved["intervals_overlapping"] == 0
