"""Every exit method the suite knows: trained classifier kinds and training-free confidence rules.

Two registries behind one name space (the `<kind>` of `ee-<kind>-<policy>-t<threshold>`):
- trained kinds: `ExitClassifier` subclasses (dynamax_bench/classifiers/kinds.py), distilled by the
  `distill` rule, one per exit position;
- training-free rules: `ExitRule` subclasses built from the threshold alone (no distill job).

A new method needs no edit of the suite: a package declares an entry point in the group
`dynamax_bench.classifiers.registry` whose object is either kind of class, e.g. in its pyproject.toml

    [project.entry-points."dynamax_bench.classifiers.registry"]
    entropy = "my_package.rules:EntropyRule"

and the profile lists the name in `classifiers.kinds`; every table and figure then carries it.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

import torch
from torch import Tensor

from dynamax_bench.classifiers.kinds import CLASSIFIERS, ExitClassifier
from dynamax_bench.engine.rules import ExitPoint, ExitRule

ENTRY_POINT_GROUP = "dynamax_bench.classifiers.registry"
RULES: dict[str, type[ExitRule]] = {}


def register_rule(name: str):
    """Class decorator: a training-free rule available as kind `name`."""

    def add(cls: type[ExitRule]) -> type[ExitRule]:
        if name in RULES or name in CLASSIFIERS:
            raise ValueError(f"exit method {name!r} is registered twice")
        RULES[name] = cls
        return cls

    return add


@register_rule("maxsoftmax")
class MaxSoftmaxRule(ExitRule):
    """CALM's softmax response: the largest probability of the LM head read at the exit."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def confidence(self, point: ExitPoint, hidden: Tensor) -> float:
        return float(point.head(hidden).softmax(-1).max())


@register_rule("saturation")
class SaturationRule(ExitRule):
    """Hidden-state saturation (CALM): cosine similarity of the token's hidden state at this exit
    with the one at the previous exit position; the first exit has nothing to compare with and
    never exits."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.previous: Tensor | None = None

    def confidence(self, point: ExitPoint, hidden: Tensor) -> float:
        previous, self.previous = self.previous, hidden[0, -1].float()
        if point.index == 0 or previous is None:
            return 0.0
        return float(torch.nn.functional.cosine_similarity(previous, self.previous, dim=0))

    def reset(self) -> None:
        self.previous = None


@cache
def load_plugins() -> tuple[str, ...]:
    """Register the exit methods other installed packages declare; returns their names."""
    names = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        if isinstance(obj, type) and issubclass(obj, ExitClassifier):
            if ep.name not in CLASSIFIERS:
                obj.kind = ep.name
                CLASSIFIERS[ep.name] = obj
        elif isinstance(obj, type) and issubclass(obj, ExitRule):
            RULES.setdefault(ep.name, obj)
        else:
            raise TypeError(
                f"entry point {ep.name!r} = {ep.value!r} in group {ENTRY_POINT_GROUP!r} is neither an "
                "ExitClassifier nor an ExitRule subclass"
            )
        names.append(ep.name)
    return tuple(names)


def known_kinds() -> list[str]:
    load_plugins()
    return sorted(set(CLASSIFIERS) | set(RULES))


def is_trained(kind: str) -> bool:
    """True for a classifier kind that the distill rule trains; an unknown kind lists the known ones."""
    load_plugins()
    if kind in CLASSIFIERS:
        return True
    if kind in RULES:
        return False
    raise ValueError(f"unknown exit method kind {kind!r}; known kinds: {known_kinds()}")


def training_free_rule(kind: str, threshold: float) -> ExitRule:
    if is_trained(kind):
        raise ValueError(f"{kind!r} is a trained classifier kind; load it from its distill checkpoint")
    return RULES[kind](threshold)
