"""The engine strategy of a method: how a token may leave the backbone under it."""

from __future__ import annotations

from pathlib import Path

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.classifiers.checkpoints import load_classifiers
from dynamax_bench.classifiers.fresh_state import FreshStateRule
from dynamax_bench.classifiers.registry import exit_method, is_trained, training_free_rule
from dynamax_bench.engine import ClassifierRule, Strategy
from dynamax_bench.engine.policies import POLICIES
from dynamax_bench.engine.speculative import Speculation
from dynamax_bench.spec import MethodSpec


def check_method_for(method: MethodSpec, family: str, num_layers: int | None = None) -> None:
    """Reject a method that cannot run on this backbone, with the reason."""
    if method.kind == "ee" and method.policy not in POLICIES[family]:
        raise ValueError(
            f"method {method.name!r}: policy {method.policy!r} does not apply to a {family} backbone; "
            f"use one of {list(POLICIES[family])}"
        )
    if method.kind == "prune" and num_layers is not None and not 0 <= method.prune < num_layers:
        raise ValueError(f"method {method.name!r}: cannot drop {method.prune} of {num_layers} layers")
    if method.kind == "spec" and num_layers is not None and not 1 <= method.draft_layer < num_layers:
        raise ValueError(f"method {method.name!r}: the draft exits after E layers, 1 <= E < {num_layers} on this "
                         f"backbone (got E = {method.draft_layer})")


def build_strategy(method: MethodSpec, backbone: Backbone, classifiers: str | Path | None = None,
                   loaded: dict | None = None) -> Strategy:
    """The engine strategy of a method; `ee-*` methods read their trained exit classifiers
    from `classifiers` (the distill rule's output for this backbone). `loaded` keeps the classifiers
    read, by checkpoint and kind: the methods built with one dict share their classifier modules.
    A `spec-*` method's strategy is the full model's, the output its speculation reproduces
    (`speculation_of` gives how it drafts)."""
    check_method_for(method, backbone.family, backbone.num_layers)
    if method.kind in ("full", "spec"):
        return Strategy.full()
    if method.kind == "prune":
        return Strategy.prune(backbone.num_layers, method.prune)
    if method.kind == "oracle":
        return Strategy(oracle=True)
    if method.runs_as_full:
        return Strategy.full()
    if method.threshold is None:
        raise ValueError(f"method {method.name!r}: its threshold comes from the calibrate stage; resolve it first "
                         "(dynamax_bench.calibration.resolve)")
    if not is_trained(method.exit_kind):
        return Strategy.early_exit(training_free_rule(method.exit_kind, method.threshold), method.policy)
    if classifiers is None:
        raise ValueError(f"method {method.name!r} needs the trained {method.exit_kind!r} classifiers (distill rule)")
    # Classifiers run in the float32 they were trained in, standardisation included, on any backbone dtype.
    loaded = {} if loaded is None else loaded
    registered = exit_method(method.exit_kind)
    key = (str(classifiers), registered.checkpoint)
    if key not in loaded:
        loaded[key] = load_classifiers(classifiers, registered.checkpoint, backbone.model.device)[0]
    rule = ClassifierRule if registered.prompt_state else FreshStateRule
    return Strategy.early_exit(rule(loaded[key], method.threshold), method.policy)


def speculation_of(method: MethodSpec) -> Speculation | None:
    """How a `spec-*` method drafts (None for every other method)."""
    return Speculation(method.draft_layer, method.draft_tokens) if method.kind == "spec" else None
