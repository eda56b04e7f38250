"""Profiles: load a config file, validate it against the schema, and derive names from it.

A leaf module: it imports nothing else of the package, so every layer can read a profile.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_PROFILE = REPO_ROOT / "config" / "default.yaml"


class ConfigError(ValueError):
    """A profile that cannot run; the message (one line) names the key and the fix, `detail` may say more."""

    detail: str | None = None


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


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _key_path(path: Any) -> str:
    """backbones.smollm2.prune[1]: keys joined by dots, list positions in brackets."""
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
    return text or "the profile"


def schema_problem(error: jsonschema.ValidationError) -> str:
    """One line for one schema error: the key path, the offending value, what is allowed, and for an
    unknown key or value the closest allowed one (jsonschema's own message quotes the whole schema)."""
    if error.context:  # oneOf / anyOf: the branch that came closest
        error = jsonschema.exceptions.best_match(error.context)
    where, value, rule = _key_path(error.absolute_path), error.instance, error.validator_value
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        patterns = list(error.schema.get("patternProperties", {}))
        extra = [key for key in value if key not in known and not any(re.search(p, key) for p in patterns)]
        parts = []
        for key in extra:
            close = difflib.get_close_matches(str(key), known, n=1)
            parts.append(f"{_key_path([*error.absolute_path, key])}: unknown key"
                         + (f"; did you mean {close[0]}?" if close else ""))
        return f"{'; '.join(parts)} ({where} takes {', '.join(known)})"
    if error.validator == "enum":
        close = difflib.get_close_matches(str(value), [str(v) for v in rule], n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"{where}: {_show(value)} is not one of {', '.join(map(str, rule))}{hint}"
    if error.validator == "required":
        missing = [key for key in rule if key not in value]
        return f"{where}: missing required key(s) {', '.join(missing)}"
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<",
              "minItems": "items >=", "maxItems": "items <="}
    if error.validator in bounds:
        return f"{where}: {_show(value)} is out of range; it must be {bounds[error.validator]} {rule}"
    if error.validator == "type":
        wanted = rule if isinstance(rule, str) else " or ".join(rule)
        return f"{where}: {_show(value)} is a {type(value).__name__}; it must be of type {wanted}"
    if error.validator == "const":
        return f"{where}: {_show(value)} must be {_show(rule)}"
    if error.validator == "pattern":
        return f"{where}: {_show(value)} does not match the pattern {rule}"
    return f"{where}: {error.message}"


def validate_config(config: dict) -> dict:
    """Validate against the JSON schema and fill its defaults (cross-field checks that need the
    registries live in dynamax_bench/profile_checks.py). Every problem is one clause of one line;
    jsonschema's full messages (each quotes its part of the schema) are the error's `detail`."""
    schema = load_schema()
    validator_cls = _with_defaults(jsonschema.validators.validator_for(schema))
    errors = sorted(validator_cls(schema).iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        err = ConfigError("; ".join(dict.fromkeys(schema_problem(e) for e in errors)))
        err.detail = "\n\n".join(str(e) for e in errors)
        raise err
    return config


def teachers(config: dict) -> list[str]:
    """Backbones that can teach a student or write the corpus: transformers not trained by the pipeline."""
    return [n for n, s in config["backbones"].items() if s["family"] == "transformer" and s["source"]["kind"] != "distilled"]


def distilled_backbones(config: dict) -> list[str]:
    """Backbones the pipeline trains itself (rule train_backbone)."""
    return [n for n, s in config["backbones"].items() if s["source"]["kind"] == "distilled"]


def layered(layer: dict) -> dict:
    """A file without `profile` is a layer over the default profile (config/lossless.yaml): what the
    Snakefile does with it, config/default.yaml first, then the layer's keys merged over it by
    Snakemake's own `update_config` (nested mappings merged, anything else replaced)."""
    from snakemake.utils import update_config

    config = yaml.safe_load(DEFAULT_PROFILE.read_text())
    update_config(config, layer)
    return config


def load_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} not found; profiles live in {REPO_ROOT / 'config'}")
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if "profile" not in config:
        config = layered(config)
    try:
        return validate_config(config)
    except ConfigError as err:
        located = ConfigError(f"{path}: {err}")
        located.detail = err.detail
        raise located from None


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
