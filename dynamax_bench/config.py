"""Profiles: load and validate a config file, and derive what the DAG needs from it."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from dynamax_bench.generation.tasks import TASKS

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
FAMILY_POLICIES = {"transformer": ("copy", "partial"), "mamba2": ("skip", "partial")}


class ConfigError(ValueError):
    """A profile that cannot run; the message names the key and the fix."""


def load_schema() -> dict:
    if not SCHEMA_PATH.exists():
        raise ConfigError(f"config schema not found at {SCHEMA_PATH}; run from a dynamax-bench checkout")
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _with_defaults(validator_cls: type) -> type:
    """A validator that also fills schema defaults, as Snakemake's validate(set_default=True) does."""

    def set_defaults(validator, properties, instance, schema):
        for key, sub in properties.items():
            if isinstance(instance, dict) and "default" in sub:
                instance.setdefault(key, json.loads(json.dumps(sub["default"])))
        yield from validator_cls.VALIDATORS["properties"](validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})


def validate_config(config: dict) -> dict:
    """Validate against the JSON schema, fill defaults, then check what the schema cannot say."""
    schema = load_schema()
    validator_cls = _with_defaults(jsonschema.validators.validator_for(schema))
    errors = sorted(validator_cls(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  - at '{'.'.join(map(str, e.absolute_path)) or '<top>'}': {e.message}" for e in errors]
        raise ConfigError("invalid config:\n" + "\n".join(lines))
    check_semantics(config)
    return config


def check_semantics(config: dict) -> None:
    """Cross-field rules: policies fit the family; corpus generators exist; classifier kinds are registered;
    few-shot only where a task has a pool."""
    from dynamax_bench.classifiers.registry import known_kinds  # torch import, deferred until a config is checked

    unknown = [k for k in config["classifiers"]["kinds"] if k not in known_kinds()]
    if unknown:
        raise ConfigError(f"classifiers.kinds: unknown kind(s) {unknown}; known kinds: {known_kinds()}")
    stray = sorted(set(config["classifiers"]["options"]) - set(config["classifiers"]["kinds"]))
    if stray:
        raise ConfigError(f"classifiers.options: {stray} are not in classifiers.kinds {config['classifiers']['kinds']}")
    for name, spec in config["backbones"].items():
        allowed = FAMILY_POLICIES[spec["family"]]
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
    for name, task in config["tasks"].items():
        if task.get("num_fewshot", 0) and TASKS[name].embedded_fewshot_file is None:
            raise ConfigError(
                f"tasks.{name}.num_fewshot: {name} takes no few-shot examples (lm-eval's prompt for it is "
                "fixed: TruthfulQA carries its own QA primer, CoQA the story); set it to 0"
            )


def teachers(config: dict) -> list[str]:
    """Backbones that can teach a student or write the corpus: transformers not trained by the pipeline."""
    return [n for n, s in config["backbones"].items() if s["family"] == "transformer" and s["source"]["kind"] != "distilled"]


def distilled_backbones(config: dict) -> list[str]:
    """Backbones the pipeline trains itself (rule train_backbone)."""
    return [n for n, s in config["backbones"].items() if s["source"]["kind"] == "distilled"]


def load_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} not found; profiles live in {REPO_ROOT / 'config'}")
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return validate_config(config)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def config_hash(config: dict) -> str:
    """Short content hash of the resolved config, recorded in every output."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def exit_positions(spec: dict, num_layers: int) -> list[int]:
    """Exit positions as numbers of layers executed before the exit.

    Default: `count` positions evenly spaced from L/2 to L-1 (the last exit skips only the
    final layer), rounded half up.
    """
    exits = spec.get("exits") or {"count": 4}
    if exits.get("positions"):
        positions = sorted(set(exits["positions"]))
        bad = [p for p in positions if not 1 <= p < num_layers]
        if bad:
            raise ConfigError(
                f"exits.positions {bad} out of range for a {num_layers}-layer backbone; use 1..{num_layers - 1}"
            )
        return positions
    count = exits.get("count", 4)
    first, last = num_layers / 2, num_layers - 1
    if count == 1:
        return [math.floor(first + 0.5)]
    step = (last - first) / (count - 1)
    positions = sorted({math.floor(first + i * step + 0.5) for i in range(count)})
    if len(positions) != count or positions[0] < 1:
        raise ConfigError(f"cannot place {count} distinct exits in the latter half of {num_layers} layers")
    return positions


def task_names(config: dict) -> list[str]:
    return list(config["tasks"])


def backbone_names(config: dict) -> list[str]:
    return list(config["backbones"])
