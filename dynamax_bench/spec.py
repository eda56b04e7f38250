"""Method names: one row of the study each (`full`, `prune<N>`, `oracle`, `ee-<kind>-<policy>-t<thr>`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dynamax_bench.config import FAMILY_POLICIES

_PRUNE = re.compile(r"^prune(\d+)$")
_EE = re.compile(r"^ee-([a-z0-9_]+)-([a-z]+)-t(\d+(?:\.\d+)?)$")
FORMS = "'full', 'prune<N>' (e.g. prune4), 'oracle', 'ee-<kind>-<policy>-t<threshold>' (e.g. ee-mamba-copy-t0.9)"


@dataclass(frozen=True)
class Method:
    """A parsed method name."""

    name: str
    kind: str  # full | prune | oracle | ee
    prune: int = 0
    exit_kind: str | None = None
    policy: str | None = None
    threshold: float | None = None


def format_threshold(threshold: float) -> str:
    return f"{threshold:g}"


def ee_name(exit_kind: str, policy: str, threshold: float) -> str:
    return f"ee-{exit_kind}-{policy}-t{format_threshold(threshold)}"


def parse_method(name: str) -> Method:
    """Parse a method name; an unknown one raises with the accepted forms."""
    if name in ("full", "oracle"):
        return Method(name=name, kind=name)
    if m := _PRUNE.match(name):
        return Method(name=name, kind="prune", prune=int(m.group(1)))
    if m := _EE.match(name):
        threshold = float(m.group(3))
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"method {name!r}: threshold must lie in [0, 1]")
        return Method(name=name, kind="ee", exit_kind=m.group(1), policy=m.group(2), threshold=threshold)
    raise ValueError(f"unknown method {name!r}; methods are {FORMS}")


def check_method_for(method: Method, family: str, num_layers: int | None = None) -> None:
    """Reject a method that cannot run on this backbone, with the reason."""
    if method.kind == "ee" and method.policy not in FAMILY_POLICIES[family]:
        raise ValueError(
            f"method {method.name!r}: policy {method.policy!r} does not apply to a {family} backbone; "
            f"use one of {list(FAMILY_POLICIES[family])}"
        )
    if method.kind == "prune" and num_layers is not None and not 0 <= method.prune < num_layers:
        raise ValueError(f"method {method.name!r}: cannot drop {method.prune} of {num_layers} layers")


def baseline_methods(backbone: dict, oracle: bool = True) -> list[str]:
    """The rows every backbone gets: full, its static pruning levels, and the oracle."""
    names = ["full"] + [f"prune{n}" for n in sorted(backbone.get("prune", []))]
    if oracle:
        names.append("oracle")
    return names


def ee_methods(config: dict, backbone: str) -> list[str]:
    """Early-exit rows of a backbone: every classifier kind x its policies x every threshold."""
    if not config["methods"]["early_exit"]:
        return []
    spec, classifiers = config["backbones"][backbone], config["classifiers"]
    return [
        ee_name(kind, policy, threshold)
        for kind in classifiers["kinds"]
        for policy in spec["policies"]
        for threshold in classifiers["thresholds"]
    ]
