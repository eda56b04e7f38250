"""Cross-field checks of a profile that need the registries (exit methods, tasks, state policies).

The schema (workflow/schemas/config.schema.yaml, `config.validate_config`) checks each key alone;
these rules check keys against each other and against what the suite knows. The Snakefile runs
them before it builds the DAG, so a bad profile stops with the key and the fix, not in a job.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import math
import re
from pathlib import Path

from dynamax_bench.backbones.meta import META_FILE
from dynamax_bench.classifiers.registry import known_kinds
from dynamax_bench.config import (
    ConfigError,
    backbone_names,
    exit_positions,
    load_config,
    task_names,
    teachers,
    validate_config,
)
from dynamax_bench.data_checks import check_task_data
from dynamax_bench.engine.policies import POLICIES
from dynamax_bench.generation.tasks import TASKS, get_task
from dynamax_bench.spec import FORMS, TASK_COMMON_KEYS, batched_dtype_problem, parse_method, task_spec

BACKBONES_DIR = Path("resources/backbones")  # relative to the run's working directory, as in the DAG


def config_keys(config_cls: type) -> set[str]:
    """Keyword arguments a transformers config class takes (its own and PretrainedConfig's)."""
    keys = {name for cls in config_cls.__mro__ if "__init__" in vars(cls)
            for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    if dataclasses.is_dataclass(config_cls):
        keys |= {f.name for f in dataclasses.fields(config_cls)}
    return keys


def check_source_config(name: str, source: dict) -> None:
    """`source.config` keys must be arguments of the architecture's config class: transformers
    ignores an unknown one (a typo such as num_hiden_layers builds the default depth)."""
    if "config" not in source:
        return
    from dynamax_bench.backbones.prepare import RANDOM_ARCHITECTURES  # transformers and torch

    config_cls = RANDOM_ARCHITECTURES[source["architecture"]]
    known = config_keys(config_cls)
    for key in source["config"]:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"did you mean {close[0]}?" if close else f"see {config_cls.__name__}'s arguments"
            raise ConfigError(f"backbones.{name}.source.config.{key}: not an argument of {config_cls.__name__}, "
                              f"which would ignore it; {hint}")


def known_depth(name: str, spec: dict) -> int | None:
    """A backbone's layer count when the profile or a prepared folder tells it without loading weights."""
    source = spec["source"]
    if "config" in source:
        if "num_hidden_layers" in source["config"]:
            return source["config"]["num_hidden_layers"]
        from dynamax_bench.backbones.prepare import RANDOM_ARCHITECTURES  # transformers and torch

        return RANDOM_ARCHITECTURES[source["architecture"]]().num_hidden_layers
    for meta, key in ((BACKBONES_DIR / name / META_FILE, "num_layers"),
                      (Path(source.get("path", "")) / "config.json", "num_hidden_layers")):
        if source["kind"] in ("gguf", "hub", "local") and meta.is_file():
            return json.loads(meta.read_text(encoding="utf-8")).get(key)
    return None


def check_depth(name: str, spec: dict, num_layers: int) -> None:
    """Exits and pruning levels fit a backbone of `num_layers` layers."""
    try:
        exit_positions(spec, num_layers)
    except ConfigError as err:
        raise ConfigError(f"backbones.{name}.{err}") from None
    too_deep = [n for n in spec.get("prune", []) if n >= num_layers]
    if too_deep:
        raise ConfigError(f"backbones.{name}.prune: cannot drop {too_deep} of {num_layers} layers; "
                          f"use levels below {num_layers}")


def check_speculative(config: dict) -> None:
    """`methods.speculative` names backbones of the profile, each draft layer below its depth where known."""
    for name, entries in config["methods"].get("speculative", {}).items():
        if name not in config["backbones"]:
            raise ConfigError(f"methods.speculative.{name}: no such backbone; the profile's backbones: "
                              f"{', '.join(backbone_names(config))}")
        depth = known_depth(name, config["backbones"][name])
        no_upper = [entry["exit"] for entry in entries if depth is not None and entry["exit"] >= depth]
        if no_upper:
            raise ConfigError(f"methods.speculative.{name}: exit {no_upper} leaves no layer to verify the draft on a "
                              f"backbone of {depth} layers; use exits from 1 to {depth - 1}")


def check_profile(config: dict) -> None:
    """Policies fit the family; exits and pruning fit the depth;
    corpus generators and teachers exist; classifier kinds are registered; fused Mamba-2 kernels
    only asked for on a GPU; tasks are registered with known options; few-shot only where a task
    has a pool (`check_sources` reads the data)."""
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
        depth = known_depth(name, spec)
        if depth is not None:
            check_depth(name, spec, depth)
    check_speculative(config)
    check_calibration_splits(config)
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
    batch_size = int(config.get("generation", {}).get("batch_size", 1))
    prefix_cache = bool(config.get("generation", {}).get("prefix_cache", False))
    problem = batched_dtype_problem(runtime["dtype"], batch_size, prefix_cache)
    if problem:
        raise ConfigError(
            f"generation.batch_size {batch_size} and generation.prefix_cache {str(prefix_cache).lower()} at "
            f"runtime.dtype {runtime['dtype']}: {problem}; set generation.batch_size: 1 and "
            "generation.prefix_cache: false, or runtime.dtype: float32"
        )
    for name, task in config["tasks"].items():
        check_task(name, task)
        if task.get("num_fewshot", 0) and TASKS[name].embedded_fewshot_file is None:
            raise ConfigError(
                f"tasks.{name}.num_fewshot: {name} takes no few-shot examples (lm-eval's prompt for it is "
                "fixed: TruthfulQA carries its own QA primer, CoQA the story); set it to 0"
            )


def target_problem(config: dict, target: str, rest: str) -> str:
    """Why a cell or generations path names nothing this profile has, with the names it does have."""
    parts = rest.rsplit(".", 1)[0].split("/")
    profile = config["profile"]
    if len(parts) != 3:
        return f"{target}: expected <backbone>/<task>/<method>.json (cells) or .jsonl (generations) after the stage"
    backbone, task, method = parts
    if backbone not in config["backbones"]:
        return f"{target}: profile {profile} has no backbone {backbone!r}; its backbones: {', '.join(backbone_names(config))}"
    if task not in config["tasks"]:
        return f"{target}: profile {profile} has no task {task!r}; its tasks: {', '.join(task_names(config))}"
    try:
        parse_method(method)
    except ValueError:
        return f"{target}: {method!r} is not a method; methods are {FORMS}"
    return f"{target}: cells are .json files and generations .jsonl files"


SPLIT_SLICE = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(?:\[(?P<start>\d*):(?P<end>\d*)\])?$")


def calibration_split(config: dict, task: str) -> str:
    """The split of `task`'s source its thresholds are calibrated on: `calibration.split`, one name for every
    task or one per task (a hub dataset may have no split but the evaluated one: TruthfulQA's 817 questions)."""
    split = config["calibration"]["split"]
    if isinstance(split, str):
        return split
    if task not in split:
        raise ConfigError(f"calibration.split names no split for task {task!r}; add {task}: <a split of its source "
                          "disjoint from the evaluated one, for example validation[1000:2000]>")
    return split[task]


def split_rows(split: str, limit: int | None) -> tuple[str, float, float] | None:
    """(split name, first row, end row) that `split` with `limit` reads, for a name or a datasets slice
    `name[a:b]`; None for a form it cannot place (percentages, unions)."""
    found = SPLIT_SLICE.match(split.replace(" ", ""))
    if found is None:
        return None
    start = int(found["start"] or 0)
    end = float(found["end"]) if found["end"] else math.inf
    return found["name"], start, min(end, start + limit) if limit is not None else end


def calibration_overlap(evaluated: str, calibrated: str, limit: int | None) -> str | None:
    """Why the calibration split shares rows with the evaluated one, or None: thresholds must be chosen on
    samples that are never evaluated. Both read `limit` rows from their start (the task's limit)."""
    ours, theirs = split_rows(evaluated, limit), split_rows(calibrated, limit)
    if ours is None or theirs is None or ours[0] != theirs[0]:
        return None if evaluated != calibrated else f"it is the evaluated split {evaluated!r}"
    if max(ours[1], theirs[1]) < min(ours[2], theirs[2]):
        last = min(ours[2], theirs[2])
        rows = f"rows {int(max(ours[1], theirs[1]))} to {'the end' if last == math.inf else int(last) - 1}"
        read = f" (its first {limit} rows)" if limit is not None else ""
        return f"{calibrated!r} and the evaluated {evaluated!r}{read} share {rows} of {ours[0]!r}"
    return None


def check_calibration_splits(config: dict) -> None:
    """Each task's calibration split exists for its source and is disjoint from the evaluated samples."""
    cal = config["calibration"]
    if not cal["consistency"] and not cal["match_pruning"]:
        return
    for name in config["tasks"]:
        evaluated = task_spec(config, name)  # its source and limit, as the jobs read them
        if evaluated.source["kind"] == "local":
            continue  # refused where the plan asks for its calibration split, with the fix
        calibrated = calibration_split(config, name)
        # every task's evaluated split is `validation` unless its source names another (hub_default, embedded)
        problem = calibration_overlap(evaluated.source.get("split", "validation"), calibrated, evaluated.limit)
        if problem:
            raise ConfigError(f"calibration.split for task {name}: {problem}; calibrate on rows that are never "
                              "evaluated (another split, or a slice such as validation[1000:2000])")


def prune_problem(config: dict, backbone: str, method: str) -> str | None:
    """A pruning level the backbone is too shallow for, when its depth is known before any job runs."""
    spec = parse_method(method)
    depth = known_depth(backbone, config["backbones"][backbone]) if spec.kind == "prune" else None
    if depth is None or spec.prune < depth:
        return None
    return (f"{method}: {backbone} has {depth} layers, so prune<N> takes N from 0 to {depth - 1} "
            f"(backbones.{backbone}.prune lists the profile's levels: {config['backbones'][backbone].get('prune', [])})")


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


def check_sources(config: dict) -> None:
    """What needs the model and evaluation libraries or reads the data: every `source.config` key
    is an argument of its architecture's config class (transformers), and the task data reads with
    no few-shot example among the evaluated samples (lm-eval's TruthfulQA preprocessing). The
    Snakefile runs it in the main process only, once per run, not in every job's process;
    `check_profile` stays free of model libraries."""
    for name, spec in config["backbones"].items():
        check_source_config(name, spec["source"])
    check_task_data(config)


def validate_profile(config: dict) -> dict:
    """The schema (with its defaults filled in), then the cross-field checks."""
    validate_config(config)
    check_profile(config)
    check_sources(config)
    return config


def load_profile(path: str | Path) -> dict:
    """A profile file, validated by the schema and the cross-field checks."""
    config = load_config(path)
    try:
        check_profile(config)
        check_sources(config)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return config
