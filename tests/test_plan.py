"""The job plan (dynamax_bench/plan.py) of every profile in config/, without a Snakemake process:
which cells exist, which sweep job holds each ee method, and what each job reads."""

from __future__ import annotations

import copy
import re
from collections import Counter
from pathlib import Path

import pytest
from dynamax_bench.config import REPO_ROOT, ConfigError, load_config
from dynamax_bench.plan import Plan
from dynamax_bench.spec import METHOD_PATTERN, parse_method

PROFILES = sorted(path.stem for path in (REPO_ROOT / "config").glob("*.yaml"))


@pytest.fixture(scope="module", params=PROFILES)
def profile(request: pytest.FixtureRequest) -> dict:
    return load_config(REPO_ROOT / "config" / f"{request.param}.yaml")


def sweeps(plan: Plan, backbone: str) -> list[list[str]]:
    """The method lists of every sweep job of a backbone (its wildcards filled as Snakemake would)."""
    kinds = plan.exit_kinds if plan.per_kind else [None]
    return [plan.sweep_methods({"backbone": backbone, "policy": policy, **({"exit_kind": kind} if kind else {})})
            for policy in plan.config["backbones"][backbone]["policies"] for kind in kinds]


def test_every_profile_in_config_is_planned() -> None:
    assert {"default", "smoke", "ci", "paper"} <= set(PROFILES)


def test_cells_are_each_backbone_task_and_method_once(profile: dict) -> None:
    plan = Plan.from_config(profile)
    cells = plan.cells()
    assert len(cells) == len(set(cells))
    expected = {f"results/{profile['profile']}/cells/{b}/{t}/{m}.json"
                for b in profile["backbones"] for t in profile["tasks"] for m in plan.methods(b, t)}
    assert set(cells) == expected
    for backbone in plan.backbones:
        for task, entry in profile["tasks"].items():
            methods = plan.methods(backbone, task)
            assert methods[:len(plan.baselines(backbone))] == plan.baselines(backbone)
            assert any(parse_method(m).kind == "ee" for m in methods) == (entry["early_exit"]
                                                                           and profile["methods"]["early_exit"])
            assert all(re.fullmatch(METHOD_PATTERN, m) for m in methods)


def test_each_ee_method_sits_in_exactly_one_sweep_job(profile: dict) -> None:
    plan = Plan.from_config(profile)
    for backbone in plan.backbones:
        jobs = sweeps(plan, backbone)
        counts = Counter(method for job in jobs for method in job)
        assert counts == Counter(plan.ee_methods(backbone))
        for job in jobs:
            parsed = [parse_method(m) for m in job]
            assert len({m.policy for m in parsed}) == 1
            per_job = len(profile["classifiers"]["thresholds"]) * (1 if plan.per_kind else len(plan.exit_kinds))
            assert len(job) == per_job


def test_a_sweep_reads_the_classifiers_of_its_trained_kinds_only(profile: dict) -> None:
    plan = Plan.from_config(profile)
    backbone = plan.backbones[0]
    policy = profile["backbones"][backbone]["policies"][0]
    wildcards = {"backbone": backbone, "policy": policy, "exit_kind": plan.exit_kinds[0]}
    inputs = plan.sweep_inputs(wildcards)
    kinds = [plan.exit_kinds[0]] if plan.per_kind else plan.exit_kinds
    assert inputs["backbone"] == f"resources/backbones/{backbone}"
    assert inputs["classifiers"] == [f"results/{profile['profile']}/classifiers/{backbone}/{k}.safetensors"
                                     for k in kinds if k in plan.trained_kinds]


def test_baselines_are_grouped_only_under_per_task(profile: dict) -> None:
    plan = Plan.from_config(profile)
    if profile["generation"]["baseline_jobs"] == "per_task":
        assert plan.grouped_baselines == {b: plan.baselines(b) for b in plan.backbones}
    else:
        assert plan.grouped_baselines == {}


def test_latency_times_full_the_spec_rows_and_the_ee_methods_of_the_policies_it_names(profile: dict) -> None:
    plan = Plan.from_config(profile)
    for backbone in plan.backbones:
        methods = plan.latency_methods(backbone)
        lossless = ["full", *plan.speculative_methods(backbone)]
        assert methods[:len(lossless)] == lossless
        early = methods[len(lossless):]
        policies = {parse_method(m).policy for m in early}
        first = profile["backbones"][backbone]["policies"][0]
        if profile["latency"]["policies"] == "all":
            assert early == plan.ee_methods(backbone)
        else:
            assert policies <= {first} and len(early) == len(plan.ee_methods(backbone)) // len(
                profile["backbones"][backbone]["policies"])
    assert len(plan.latency_targets()) == sum(len(plan.latency_methods(b)) for b in plan.backbones)


def test_classifier_metrics_are_the_trained_kinds_per_backbone(profile: dict) -> None:
    plan = Plan.from_config(profile)
    metrics = plan.classifier_metrics()
    assert len(metrics) == len(plan.backbones) * len(plan.trained_kinds)
    assert all(Path(m).stem in plan.trained_kinds and m.endswith(".json") for m in metrics)
    assert "maxsoftmax" not in plan.trained_kinds and "maxsoftmax" in plan.exit_kinds


def test_every_file_lives_in_the_profile_folder(profile: dict) -> None:
    plan = Plan.from_config(profile)
    results = f"results/{profile['profile']}/"
    for path in plan.cells() + plan.classifier_metrics() + plan.latency_targets() + plan.flops_targets():
        assert path.startswith(results), path
    assert plan.backbone_dirs() == [f"resources/backbones/{b}" for b in profile["backbones"]]


def test_smoke_plan_in_numbers() -> None:
    """The smoke profile's plan, counted by hand: 2 backbones x 3 tasks x 4 baselines (full, prune0,
    prune4, oracle), plus on TriviaQA per backbone 3 kinds x 2 policies x 1 threshold, and the calibrated rows
    of its first policy: 3 kinds x 1 consistency target, and prune4's savings for the 2 kinds that are not
    variants."""
    plan = Plan.from_config(load_config(REPO_ROOT / "config" / "smoke.yaml"))
    assert len(plan.cells()) == 2 * 3 * 4 + 2 * 6 + 2 * (3 + 2)
    assert plan.calibrated_methods("tiny_mistral", "copy") == [
        "ee-calm-copy-c0.5", "ee-calm-copy-p4", "ee-maxsoftmax-copy-c0.5", "ee-maxsoftmax-copy-p4",
        "ee-mamba_fresh-copy-c0.5"]
    assert plan.calibrations() == ["results/smoke/calibration/tiny_mistral/triviaqa.json",
                                   "results/smoke/calibration/tiny_mamba2/triviaqa.json"]
    assert plan.sweep_templates == ["ee-calm-{policy}-t0.5", "ee-mamba-{policy}-t0.5", "ee-maxsoftmax-{policy}-t0.5"]
    assert plan.sweep_name == "ee-{policy}"
    assert plan.trained_kinds == ["calm", "mamba"]
    assert plan.latency_methods("tiny_mistral") == ["full", "ee-calm-copy-t0.5", "ee-mamba-copy-t0.5",
                                                    "ee-maxsoftmax-copy-t0.5"]
    assert plan.corpus_backbones == {"tiny_mistral": "resources/backbones/tiny_mistral"}
    assert plan.distilled_backbones == ["tiny_mamba2"] and plan.prepared_backbones == ["tiny_mistral"]
    assert plan.teacher_dir("tiny_mamba2") == "resources/backbones/tiny_mistral"


def test_speculative_rows_are_cells_of_every_task_and_latency_files_decoded_alone(smoke_config: dict) -> None:
    """`methods.speculative` rows follow the baselines on every task (early exit or not), are timed after
    `full`, read the backbone only, stay out of the grouped baseline jobs and decode at batch 1."""
    config = copy.deepcopy(smoke_config)
    config["methods"]["speculative"] = {"tiny_mistral": [{"exit": 4, "draft": 3}, {"exit": 2, "draft": 5}]}
    config["tasks"]["coqa"]["early_exit"] = False
    plan = Plan.from_config(config)
    rows = ["spec-e4-k3", "spec-e2-k5"]
    assert plan.speculative_methods("tiny_mistral") == rows and plan.speculative_methods("tiny_mamba2") == []
    for task in config["tasks"]:
        methods = plan.methods("tiny_mistral", task)
        assert methods[len(plan.baselines("tiny_mistral")):][:2] == rows
        assert not any(m.startswith("spec-") for m in plan.methods("tiny_mamba2", task))
    assert plan.latency_methods("tiny_mistral")[:3] == ["full", *rows]
    assert len(plan.cells()) == len(Plan.from_config({**config, "methods": {**config["methods"], "speculative": {}}})
                                    .cells()) + 2 * len(config["tasks"])
    assert plan.method_inputs("tiny_mistral", "spec-e4-k3") == {"backbone": "resources/backbones/tiny_mistral"}
    assert not any(m in rows for grouped in plan.grouped_baselines.values() for m in grouped)
    (decoded,) = plan.decode_specs("tiny_mistral", "triviaqa", ["spec-e4-k3"])
    assert (decoded["batch_size"], decoded["prefix_cache"]) == (1, False)
    assert config["generation"]["batch_size"] > 1  # the smoke profile batches the other rows


def test_per_kind_sweeps_keep_the_exit_kind_as_a_wildcard(smoke_config: dict) -> None:
    config = copy.deepcopy(smoke_config)
    config["generation"]["ee_jobs"] = "per_kind"
    plan = Plan.from_config(config)
    assert plan.sweep_name == "ee-{exit_kind}-{policy}"
    assert plan.sweep_methods({"exit_kind": "mamba", "policy": "skip", "backbone": "tiny_mamba2"}) == ["ee-mamba-skip-t0.5"]
    assert plan.sweep_inputs({"exit_kind": "maxsoftmax", "policy": "skip", "backbone": "tiny_mamba2"})["classifiers"] == []


def test_no_early_exit_plans_no_classifier(smoke_config: dict) -> None:
    config = copy.deepcopy(smoke_config)
    config["methods"]["early_exit"] = False
    plan = Plan.from_config(config)
    assert plan.classifier_metrics() == []
    assert not any(parse_method(Path(c).stem).kind == "ee" for c in plan.cells())


def test_method_inputs_name_the_classifiers_of_a_trained_kind_only(smoke_config: dict) -> None:
    plan = Plan.from_config(smoke_config)
    assert plan.method_inputs("tiny_mistral", "full") == {"backbone": "resources/backbones/tiny_mistral"}
    assert plan.method_inputs("tiny_mistral", "ee-maxsoftmax-copy-t0.3") == {"backbone": "resources/backbones/tiny_mistral"}
    assert plan.method_inputs("tiny_mistral", "ee-calm-copy-t0.3") == {
        "backbone": "resources/backbones/tiny_mistral",
        "classifiers": "results/smoke/classifiers/tiny_mistral/calm.safetensors"}


def test_a_prune_level_deeper_than_the_backbone_fails_while_planning(smoke_config: dict) -> None:
    plan = Plan.from_config(smoke_config)
    with pytest.raises(ConfigError, match="prune12: tiny_mistral has 8 layers, so prune<N> takes N from 0 to 7"):
        plan.method_inputs("tiny_mistral", "prune12")


@pytest.mark.parametrize(("probe", "message"), [
    ("maxsoftmax", "distill.top_k.probe: 'maxsoftmax' is a training-free exit rule; name a trained classifier kind"),
    ("nope", "distill.top_k.probe: unknown exit method kind 'nope'"),
])
def test_the_probe_must_be_a_trained_kind(smoke_config: dict, probe: str, message: str) -> None:
    config = copy.deepcopy(smoke_config)
    config["distill"]["top_k"]["probe"] = probe
    with pytest.raises(ConfigError, match=re.escape(message)):
        Plan.from_config(config)


def test_task_data_lists_local_sources_only(smoke_config: dict, tmp_path: Path) -> None:
    config = copy.deepcopy(smoke_config)
    plan = Plan.from_config(config)
    assert plan.task_data("triviaqa") == []
    config["tasks"]["triviaqa"]["source"] = {"kind": "local", "path": "data/trivia.jsonl"}
    config["tasks"]["triviaqa"]["fewshot_source"] = {"kind": "local", "path": "data/shots.jsonl"}
    assert Plan.from_config(config).task_data("triviaqa") == ["data/trivia.jsonl", "data/shots.jsonl"]


def test_decode_specs_follow_the_methods_in_order(smoke_config: dict) -> None:
    plan = Plan.from_config(smoke_config)
    specs = plan.decode_specs("tiny_mistral", "triviaqa", ["oracle", "full"])
    assert [s["method"]["name"] for s in specs] == ["oracle", "full"]
    latency = plan.latency_specs("tiny_mistral", ["full"])[0]
    assert (latency["task"], latency["batch_size"], latency["max_new_tokens"]) == ("triviaqa", 1, 4)


def test_calibrated_kinds_read_their_checkpoints_and_variants_train_only_when_they_have_their_own(
        smoke_config: dict) -> None:
    config = copy.deepcopy(smoke_config)
    config["calibration"]["kinds"] = ["calm", "mamba_fresh", "mamba_k3"]
    plan = Plan.from_config(config)
    assert plan.trained_kinds == ["calm", "mamba", "mamba_k3"]  # mamba_fresh reads mamba's classifiers
    assert plan.method_inputs("tiny_mistral", "ee-mamba_fresh-copy-c0.5")["classifiers"] == \
        "results/smoke/classifiers/tiny_mistral/mamba.safetensors"
    assert plan.calibrate_inputs("tiny_mistral")["classifiers"] == [
        "results/smoke/classifiers/tiny_mistral/calm.safetensors",
        "results/smoke/classifiers/tiny_mistral/mamba.safetensors",
        "results/smoke/classifiers/tiny_mistral/mamba_k3.safetensors"]
    assert plan.kind_options("mamba_k3") == plan.kind_options("mamba") == {"head_dim": 16, "chunk_size": 64}
    settings = plan.calibration_settings("tiny_mamba2")
    assert settings["policies"] == ["skip"] and settings["prune"] == [4]
    assert plan.calibration_task_spec("triviaqa")["source"] == {"kind": "embedded", "split": "calibration"}


def test_no_target_plans_no_calibration(smoke_config: dict) -> None:
    config = copy.deepcopy(smoke_config)
    config["calibration"].update(consistency=[], match_pruning=False)
    plan = Plan.from_config(config)
    assert plan.calibrated_kinds == [] and plan.calibrations() == []
    assert not any(parse_method(Path(cell).stem).calibrated for cell in plan.cells())
