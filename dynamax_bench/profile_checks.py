"""Cross-field checks of a profile that need the registries (exit methods, tasks, state policies).

The schema (workflow/schemas/config.schema.yaml, `config.validate_config`) checks each key alone;
these rules check keys against each other and against what the suite knows. The Snakefile runs
them before it builds the DAG, so a bad profile stops with the key and the fix, not in a job.
"""

from __future__ import annotations

from pathlib import Path

from dynamax_bench.classifiers.registry import known_kinds
from dynamax_bench.config import ConfigError, load_config, teachers, validate_config
from dynamax_bench.engine.policies import POLICIES
from dynamax_bench.generation.tasks import TASKS, get_task
from dynamax_bench.spec import TASK_COMMON_KEYS


def check_profile(config: dict) -> None:
    """Policies fit the family; corpus generators and teachers exist; classifier kinds are
    registered; fused Mamba-2 kernels only asked for on a GPU; few-shot only where a task has a pool."""
    unknown = [k for k in config["classifiers"]["kinds"] if k not in known_kinds()]
    if unknown:
        raise ConfigError(f"classifiers.kinds: unknown kind(s) {unknown}; known kinds: {known_kinds()}")
    stray = sorted(set(config["classifiers"]["options"]) - set(config["classifiers"]["kinds"]))
    if stray:
        raise ConfigError(f"classifiers.options: {stray} are not in classifiers.kinds {config['classifiers']['kinds']}")
    for name, spec in config["backbones"].items():
        allowed = POLICIES[spec["family"]]
        bad = [p for p in spec["policies"] if p not in allowed]
        if bad:
            raise ConfigError(
                f"backbones.{name}.policies: {bad} do not apply to a {spec['family']} backbone; "
                f"use {list(allowed)}"
            )
    for name, spec in config["backbones"].items():
        if spec["source"]["kind"] != "distilled":
            continue
        if spec["family"] != "mamba2":
            raise ConfigError(f"backbones.{name}.family: a distilled backbone is a Mamba-2 student; set family: mamba2")
        teacher = config["backbones"].get(spec["source"]["teacher"])
        if teacher is None or teacher["family"] != "transformer" or teacher["source"]["kind"] == "distilled":
            raise ConfigError(
                f"backbones.{name}.source.teacher: {spec['source']['teacher']!r} must name a transformer backbone of "
                f"this profile with weights of its own ({teachers(config)})"
            )
    for i, source in enumerate(config["corpus"]["sources"]):
        if source["kind"] != "generated":
            continue
        spec = config["backbones"].get(source["backbone"])
        if spec is None or spec["family"] != "transformer" or spec["source"]["kind"] == "distilled":
            raise ConfigError(
                f"corpus.sources[{i}].backbone: {source['backbone']!r} must name a transformer backbone of this "
                f"profile with weights of its own ({teachers(config)})"
            )
    runtime = config["runtime"]
    if runtime.get("mamba_kernels") == "required" and runtime["device"] == "cpu":
        raise ConfigError(
            "runtime.mamba_kernels: 'required' asks for the fused Mamba-2 CUDA kernels but runtime.device is cpu; "
            "set runtime.mamba_kernels: auto (or run on cuda)"
        )
    for name, task in config["tasks"].items():
        check_task(name, task)
        if task.get("num_fewshot", 0) and TASKS[name].embedded_fewshot_file is None:
            raise ConfigError(
                f"tasks.{name}.num_fewshot: {name} takes no few-shot examples (lm-eval's prompt for it is "
                "fixed: TruthfulQA carries its own QA primer, CoQA the story); set it to 0"
            )


def check_task(name: str, entry: dict) -> None:
    """A registered task, with only the common keys and its class's own options, whose values its
    constructor accepts (the schema takes any task name and key; the registry knows them)."""
    if name not in TASKS:
        raise ConfigError(f"tasks.{name}: unknown task; known tasks: {sorted(TASKS)} (dynamax_bench/generation/tasks)")
    options = {key: value for key, value in entry.items() if key not in TASK_COMMON_KEYS}
    stray = sorted(set(options) - set(TASKS[name].options))
    if stray:
        raise ConfigError(f"tasks.{name}: unknown key(s) {stray}; its options: {list(TASKS[name].options)}, "
                          f"common keys: {list(TASK_COMMON_KEYS)}")
    try:
        get_task(name, **options)
    except ValueError as err:
        raise ConfigError(f"tasks.{name}: {err}") from None


def validate_profile(config: dict) -> dict:
    """The schema (with its defaults filled in), then the cross-field checks."""
    validate_config(config)
    check_profile(config)
    return config


def load_profile(path: str | Path) -> dict:
    """A profile file, validated by the schema and the cross-field checks."""
    config = load_config(path)
    try:
        check_profile(config)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return config
