"""The one registry of exit methods: trained classifier kinds and training-free rules.

Every `<kind>` of `ee-<kind>-<policy>-t<threshold>` is an entry here: an `ExitClassifier`
subclass (trained, one per exit position, by the `distill` rule) or an `ExitRule` subclass
(training-free, built from the threshold alone). Every look-up first loads the plug-ins, so a
new method needs no edit of the suite: a package declares an entry point in the group
`dynamax_bench.exit_methods`, e.g. in its pyproject.toml

    [project.entry-points."dynamax_bench.exit_methods"]
    entropy = "my_package.rules:EntropyRule"

and the profile lists the name in `classifiers.kinds`; every rule, table and figure then carries it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dynamax_bench.classifiers.kinds import ExitClassifier
    from dynamax_bench.engine.rules import ExitRule

ENTRY_POINT_GROUP = "dynamax_bench.exit_methods"


@dataclass(frozen=True)
class ExitMethod:
    """One registered exit method.

    trained: an `ExitClassifier` the distill rule trains (else a training-free `ExitRule`).
    stateful: it keeps per-sequence state, so it also steps at the exits after the one a token
    took (the cost ledger counts those steps).
    target: the class, or "module:Class" for a built-in, imported on first use of `cls`: the
    Snakefile and the score rule ask only `trained` and `stateful`, without loading torch.
    """

    name: str
    trained: bool
    stateful: bool
    target: type | str

    @property
    def cls(self) -> type:
        if isinstance(self.target, type):
            return self.target
        module, _, attr = self.target.partition(":")
        cls = getattr(import_module(module), attr)
        if self.trained:
            cls.kind = self.name
        return cls


EXIT_METHODS: dict[str, ExitMethod] = {}

# Built-in methods: (class, trained, stateful); tests/test_exit_methods.py checks the flags against the classes.
BUILTIN_METHODS: dict[str, tuple[str, bool, bool]] = {
    "calm": ("dynamax_bench.classifiers.kinds:CalmClassifier", True, False),
    "ffn": ("dynamax_bench.classifiers.kinds:FfnClassifier", True, False),
    "mamba": ("dynamax_bench.classifiers.kinds:MambaClassifier", True, True),
    "maxsoftmax": ("dynamax_bench.classifiers.training_free:MaxSoftmaxRule", False, False),
    "saturation": ("dynamax_bench.classifiers.training_free:SaturationRule", False, False),
}


def register(name: str, cls: type) -> ExitMethod:
    """Add an exit method under `name`; its class says whether it is trained and stateful."""
    from dynamax_bench.classifiers.kinds import ExitClassifier
    from dynamax_bench.engine.rules import ExitRule

    if name in EXIT_METHODS:
        raise ValueError(f"exit method {name!r} is registered twice ({EXIT_METHODS[name].target} and {cls})")
    if isinstance(cls, type) and issubclass(cls, ExitClassifier):
        cls.kind = name
        trained = True
    elif isinstance(cls, type) and issubclass(cls, ExitRule):
        trained = False
    else:
        raise TypeError(f"exit method {name!r}: {cls!r} is neither an ExitClassifier nor an ExitRule subclass")
    method = ExitMethod(name=name, trained=trained, stateful=bool(getattr(cls, "stateful", False)), target=cls)
    EXIT_METHODS[name] = method
    return method


for _name, (_target, _trained, _stateful) in BUILTIN_METHODS.items():
    EXIT_METHODS[_name] = ExitMethod(name=_name, trained=_trained, stateful=_stateful, target=_target)


@cache
def load_plugins() -> tuple[str, ...]:
    """Register the exit methods other installed packages declare; returns their names."""
    names = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in EXIT_METHODS:
            try:
                register(ep.name, ep.load())
            except TypeError as err:
                raise TypeError(f"entry point {ep.name!r} = {ep.value!r} in group {ENTRY_POINT_GROUP!r}: {err}") from None
        names.append(ep.name)
    return tuple(names)


def known_kinds() -> list[str]:
    load_plugins()
    return sorted(EXIT_METHODS)


def exit_method(kind: str) -> ExitMethod:
    """The registered method of a kind (plug-ins loaded); an unknown kind lists the known ones."""
    load_plugins()
    try:
        return EXIT_METHODS[kind]
    except KeyError:
        raise ValueError(f"unknown exit method kind {kind!r}; known kinds: {known_kinds()}") from None


def is_trained(kind: str) -> bool:
    """True for a classifier kind that the distill rule trains."""
    return exit_method(kind).trained


def build_classifier(kind: str, hidden_size: int, options: dict[str, Any] | None = None) -> ExitClassifier:
    """A fresh (untrained) classifier of a trained kind."""
    method = exit_method(kind)
    if not method.trained:
        raise ValueError(f"{kind!r} is a training-free exit rule, not a classifier kind the distill rule trains")
    return method.cls(hidden_size, **(options or {}))


def training_free_rule(kind: str, threshold: float) -> ExitRule:
    method = exit_method(kind)
    if method.trained:
        raise ValueError(f"{kind!r} is a trained classifier kind; load it from its distill checkpoint")
    return method.cls(threshold)
