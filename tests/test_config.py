"""Profiles validate; a bad key or value stops the run with a message that names it."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from dynamax_bench.config import REPO_ROOT, ConfigError, exit_positions, validate_config
from dynamax_bench.profile_checks import load_profile, validate_profile


@pytest.mark.parametrize("profile", ["default", "smoke", "paper", "ci"])
def test_profiles_validate(profile: str) -> None:
    config = load_profile(REPO_ROOT / "config" / f"{profile}.yaml")
    assert config["profile"] == profile
    assert config["generation"]["repetition_penalty"] >= 1.0


def test_unknown_key_is_named(smoke_config: dict) -> None:
    config = copy.deepcopy(smoke_config)
    config["generation"]["max_new_tokenz"] = 3
    with pytest.raises(ConfigError, match=r"generation.*max_new_tokenz"):
        validate_profile(config)


@pytest.mark.parametrize(("task", "key", "value", "message"), [
    ("squad", "source", {"kind": "embedded"}, r"tasks.squad: unknown task; known tasks: \['coqa'"),
    ("coqa", "turn", "all", r"tasks.coqa: unknown key\(s\) \['turn'\]; its options: \['turns'\]"),
    ("coqa", "turns", "first", r"tasks.coqa: task coqa: turns must be one of"),
    ("triviaqa", "turns", "all", r"tasks.triviaqa: unknown key\(s\) \['turns'\]; its options: \[\]"),
])
def test_task_names_keys_and_options_come_from_the_task_registry(smoke_config: dict, task: str, key: str, value,
                                                                  message: str) -> None:
    config = copy.deepcopy(smoke_config)
    config["tasks"].setdefault(task, {"source": {"kind": "embedded"}})[key] = value
    with pytest.raises(ConfigError, match=message):
        validate_profile(config)


def test_the_paper_profile_calibrates_each_task_on_rows_it_never_evaluates() -> None:
    from dynamax_bench.plan import Plan

    plan = Plan.from_config(load_profile(REPO_ROOT / "config" / "paper.yaml"))
    splits = {task: plan.calibration_task_spec(task)["source"]["split"] for task in plan.tasks}
    assert splits == {"triviaqa": "validation[1000:2000]", "coqa": "train[:500]", "truthfulqa": "validation[409:]"}
    assert len(plan.calibrations()) == 6 and any("-c0.95" in cell for cell in plan.cells())


@pytest.mark.parametrize(("evaluated", "limit", "split", "message"), [
    ("validation", None, "validation", r"calibration.split for task triviaqa: 'validation' and the evaluated "
                                       r"'validation' share rows 0 to the end of 'validation'; calibrate on rows"),
    ("validation", 1000, "validation[999:2000]", r"'validation\[999:2000\]' and the evaluated 'validation' \(its first "
                                                 r"1000 rows\) share rows 999 to 999 of 'validation'"),
    ("validation[:409]", None, "validation[400:]", r"share rows 400 to 408 of 'validation'"),
    ("validation", None, {"coqa": "train"}, r"calibration.split names no split for task 'triviaqa'; add triviaqa: "),
])
def test_a_calibration_split_that_meets_the_evaluated_rows_is_refused(smoke_config: dict, evaluated: str,
                                                                      limit: int | None, split, message: str) -> None:
    config = copy.deepcopy(smoke_config)
    config["tasks"] = {"triviaqa": {"source": {"kind": "hub", "path": "mandarjoshi/trivia_qa", "split": evaluated},
                                    "limit": limit}}
    config["calibration"]["split"] = split
    with pytest.raises(ConfigError, match=message):
        validate_profile(config)


@pytest.mark.parametrize(("evaluated", "limit", "split"), [
    ("validation", 1000, "validation[1000:2000]"), ("validation[:409]", None, "validation[409:]"),
    ("validation", None, "train[:500]"), ("validation", None, "calibration")])
def test_a_disjoint_calibration_split_passes(smoke_config: dict, evaluated: str, limit: int | None, split: str) -> None:
    from dynamax_bench.profile_checks import calibration_overlap

    assert calibration_overlap(evaluated, split, limit) is None


def test_bad_value_is_named(smoke_config: dict) -> None:
    config = copy.deepcopy(smoke_config)
    config["generation"]["repetition_penalty"] = 0.5
    with pytest.raises(ConfigError, match="generation.repetition_penalty"):
        validate_profile(config)


def test_policy_must_fit_family(smoke_config: dict) -> None:
    config = copy.deepcopy(smoke_config)
    config["backbones"]["tiny_mistral"]["policies"] = ["skip"]
    with pytest.raises(ConfigError, match="backbones.tiny_mistral.policies"):
        validate_profile(config)


def test_snakemake_refuses_a_bad_config(tmp_path) -> None:
    config = yaml.safe_load((REPO_ROOT / "config" / "smoke.yaml").read_text())
    config["backbones"]["tiny_mamba2"]["exits"]["cnt"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", str(bad)],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "cnt" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("layers", "expected"),
    [(30, [15, 20, 24, 29]), (32, [16, 21, 26, 31]), (64, [32, 42, 53, 63]), (8, [4, 5, 6, 7])],
)
def test_default_exit_positions(layers: int, expected: list[int]) -> None:
    assert exit_positions({"exits": {"count": 4}}, layers) == expected


def test_explicit_exit_positions_are_checked() -> None:
    assert exit_positions({"exits": {"positions": [20, 10]}}, 30) == [10, 20]
    with pytest.raises(ConfigError, match="out of range"):
        exit_positions({"exits": {"positions": [30]}}, 30)


@pytest.mark.parametrize("generation", [{"batch_size": 16, "prefix_cache": False}, {"batch_size": 1, "prefix_cache": True}])
def test_batched_engine_is_refused_where_its_near_tie_bounds_are_not_measured(smoke_config: dict, generation: dict) -> None:
    """In bfloat16 the float32 bounds scaled by epsilon call every decision a near tie: every row
    would be re-decoded at batch 1, so the batched engine would only cost time."""
    config = copy.deepcopy(smoke_config)
    config["runtime"]["dtype"] = "bfloat16"
    config["generation"].update(generation)
    with pytest.raises(ConfigError, match=r"generation.batch_size .* at runtime.dtype bfloat16.*measured for \['float32'\]"
                                          r".*set generation.batch_size: 1 and generation.prefix_cache: false"):
        validate_profile(config)
    config["generation"].update(batch_size=1, prefix_cache=False)
    validate_profile(config)  # the reference path runs in any dtype


def snakemake_defaults(config: dict) -> dict:
    from snakemake.utils import validate

    from dynamax_bench.config import SCHEMA_PATH

    validate(config, str(SCHEMA_PATH))
    return config


def without_optional_sections(profile: str) -> dict:
    """A profile with every section and key that has a schema default left out."""
    config = yaml.safe_load((REPO_ROOT / "config" / f"{profile}.yaml").read_text())
    config["methods"] = {}
    for section in ("classifiers", "distill", "evidence", "latency", "flops", "limit"):
        config.pop(section, None)
    for backbone in config["backbones"].values():
        backbone.pop("exits", None)
        backbone.pop("prune", None)
    return config


@pytest.mark.parametrize("profile", ["default", "smoke", "paper", "ci"])
def test_defaults_are_those_snakemake_fills_nested_sections_included(profile: str) -> None:
    for raw in (yaml.safe_load((REPO_ROOT / "config" / f"{profile}.yaml").read_text()),
                without_optional_sections(profile)):
        ours = validate_config(copy.deepcopy(raw))
        assert ours == snakemake_defaults(copy.deepcopy(raw))
    assert ours["distill"]["top_k"] == {"candidates": [1, 3, 5, 10], "probe": "calm"}  # a default inside a default
    assert all(b["exits"] == {"count": 4} and b["prune"] == [] for b in ours["backbones"].values())


def test_a_default_is_copied_not_shared_between_entries() -> None:
    """Snakemake's filler inserts the schema's own object: two backbones without `prune` share one list."""
    ours = validate_config(without_optional_sections("smoke"))
    theirs = snakemake_defaults(without_optional_sections("smoke"))
    first, second = (list(config["backbones"].values()) for config in (ours, theirs))
    assert first[0]["prune"] is not first[1]["prune"]
    assert second[0]["prune"] is second[1]["prune"]  # why config.validate_config keeps its own filler


def test_a_file_without_a_profile_key_is_a_layer_over_the_default_profile() -> None:
    """config/lossless.yaml: every setting of config/default.yaml, plus the self-speculative rows."""
    default, lossless = (load_profile(REPO_ROOT / "config" / f"{name}.yaml") for name in ("default", "lossless"))
    assert "profile" not in yaml.safe_load((REPO_ROOT / "config" / "lossless.yaml").read_text())
    assert lossless["profile"] == "default" and not default["methods"].get("speculative")
    assert lossless["methods"]["speculative"] == {"smollm2": [{"exit": 24, "draft": 2}], "mamba2": [{"exit": 13, "draft": 3}]}
    assert {**lossless, "methods": {**lossless["methods"], "speculative": {}}} == \
        {**default, "methods": {**default["methods"], "speculative": {}}}


def test_a_layer_with_a_bad_key_is_named_with_its_file(tmp_path) -> None:
    layer = tmp_path / "layer.yaml"
    layer.write_text("methods:\n  speculatve: {}\n")
    with pytest.raises(ConfigError, match=rf"{layer}: .*methods.*speculatve"):
        load_profile(layer)


def test_snakemake_reads_a_layer_as_the_loader_does(tmp_path) -> None:
    """The Snakefile merges config/lossless.yaml over the default profile (results/default/): its dry run
    plans the default run's cells plus a spec-* cell per backbone and task."""
    def planned(configfile: str) -> set[str]:
        result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO_ROOT / "Snakefile"),
                                 "--directory", str(tmp_path), "paper_tables/", "-n", "-p", "--cores", "2",
                                 "--configfile", str(REPO_ROOT / "config" / configfile)],
                                capture_output=True, text=True, cwd=REPO_ROOT)
        assert result.returncode == 0, result.stderr[-3000:]
        return {line.split("output: ")[1] for line in result.stdout.splitlines() if "output: " in line}

    default, lossless = planned("default.yaml"), planned("lossless.yaml")
    spec = {f"results/default/cells/{backbone}/{task}/{method}.json"
            for backbone, method in (("smollm2", "spec-e24-k2"), ("mamba2", "spec-e13-k3"))
            for task in ("triviaqa", "truthfulqa", "coqa")}
    assert default < lossless and spec <= lossless and not spec & default
    assert all(path.startswith(("results/default/", "paper_tables")) or "/" not in path for path in lossless - default)
