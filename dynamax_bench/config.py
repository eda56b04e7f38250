"""Profiles: load a config file, validate it against the schema, and derive names from it.

A leaf module: it imports nothing else of the package, so every layer can read a profile.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A profile that cannot run; the message names the key and the fix."""


def load_schema() -> dict:
    if not SCHEMA_PATH.exists():
        raise ConfigError(f"config schema not found at {SCHEMA_PATH}; run from a dynamax-bench checkout")
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _with_defaults(validator_cls: type) -> type:
    """A validator that also fills schema defaults, as Snakemake's validate(set_default=True) does
    for the Snakefile; kept beside it for profiles read outside Snakemake (tests, scripts, lm-eval).

    Snakemake's fills the same defaults, nested sections included (tests/test_config.py compares
    them on every profile), but it is not a replacement: it inserts the schema's default objects
    themselves, so two backbones that omit `prune` share one list, and it stops at the first error,
    where `validate_config` names every bad key with its path. This one copies each default."""

    def set_defaults(validator, properties, instance, schema):
        for key, sub in properties.items():
            if isinstance(instance, dict) and "default" in sub:
                instance.setdefault(key, json.loads(json.dumps(sub["default"])))
        yield from validator_cls.VALIDATORS["properties"](validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})


def validate_config(config: dict) -> dict:
    """Validate against the JSON schema and fill its defaults (cross-field checks that need the
    registries live in dynamax_bench/profile_checks.py)."""
    schema = load_schema()
    validator_cls = _with_defaults(jsonschema.validators.validator_for(schema))
    errors = sorted(validator_cls(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  - at '{'.'.join(map(str, e.absolute_path)) or '<top>'}': {e.message}" for e in errors]
        raise ConfigError("invalid config:\n" + "\n".join(lines))
    return config


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
                f"exits.positions: {bad} out of range for a {num_layers}-layer backbone; use 1..{num_layers - 1}"
            )
        return positions
    count = exits.get("count", 4)
    first, last = num_layers / 2, num_layers - 1
    if count == 1:
        return [math.floor(first + 0.5)]
    step = (last - first) / (count - 1)
    positions = sorted({math.floor(first + i * step + 0.5) for i in range(count)})
    if len(positions) != count or positions[0] < 1:
        room = max(0, last - math.floor(first + 0.5) + 1)
        raise ConfigError(f"exits.count: {count} distinct exits do not fit in the latter half of a {num_layers}-layer "
                          f"backbone (at most {room}); lower exits.count or give exits.positions")
    return positions


def task_names(config: dict) -> list[str]:
    return list(config["tasks"])


def backbone_names(config: dict) -> list[str]:
    return list(config["backbones"])
