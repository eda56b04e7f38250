"""The one registry of exit methods: trained classifier kinds and training-free rules.

Every `<kind>` of `ee-<kind>-<policy>-t<threshold>` is an entry here: an `ExitClassifier`
subclass (trained, one per exit position, by the `distill` rule) or an `ExitRule` subclass
(training-free, built from the threshold alone). Every look-up first loads the plug-ins, so a
new method needs no edit of the suite: a package declares an entry point in the group
`dynamax_bench.exit_methods`, e.g. in its pyproject.toml

    [project.entry-points."dynamax_bench.exit_methods"]
    entropy = "my_package.rules:EntropyRule"

and the profile lists the name in `classifiers.kinds`; every rule, table and figure then carries it.

Variants of a registered method are names too, derived here rather than registered:
- `<kind>_k<K>` (e.g. `mamba_k5`): the trained kind distilled at top-k relaxation K instead of the k
  `select_top_k` chooses (the paper's recipe measured whatever the selection picks); its own checkpoint;
- `<kind>_fresh` (e.g. `mamba_fresh`): a stateful trained kind whose state starts at the first generated
  token instead of being built over the prompt (does the prompt pass buy anything?); it reads the
  kind's own checkpoint, and no prompt pass is run or counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
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
    checkpoint: str = ""  # the kind whose distill checkpoint it reads (its own name unless a `_fresh` variant)
    top_k: int | None = None  # a `_k<K>` variant: distilled at this k, not the selected one
    prompt_state: bool = True  # a stateful method builds its state over the prompt (not a `_fresh` variant)

    def __post_init__(self) -> None:
        if not self.checkpoint:
            object.__setattr__(self, "checkpoint", self.name)

    @property
    def distilled(self) -> bool:
        """Trained by a distill job of its own (a `_fresh` variant reuses its kind's classifiers)."""
        return self.trained and self.checkpoint == self.name

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


VARIANT = re.compile(r"^(?P<base>[a-z0-9]+?)_(?:k(?P<k>[1-9][0-9]*)|(?P<fresh>fresh))$")


def variant(kind: str) -> ExitMethod | None:
    """The method a variant name derives from its registered kind, or None when it names no variant."""
    found = VARIANT.match(kind)
    if not found or found["base"] not in EXIT_METHODS:
        return None
    base = EXIT_METHODS[found["base"]]
    if not base.trained:
        raise ValueError(f"exit kind {kind!r}: {base.name!r} is training-free; variants exist of trained kinds only")
    if found["k"]:
        return replace(base, name=kind, checkpoint=kind, top_k=int(found["k"]))
    if not base.stateful:
        raise ValueError(f"exit kind {kind!r}: {base.name!r} keeps no state, so it has no state to start fresh")
    return replace(base, name=kind, checkpoint=base.name, prompt_state=False)


def exit_method(kind: str) -> ExitMethod:
    """The registered method of a kind, or of a variant name (plug-ins loaded); an unknown kind lists the
    known ones."""
    load_plugins()
    if kind in EXIT_METHODS:
        return EXIT_METHODS[kind]
    derived = variant(kind)
    if derived is None:
        raise ValueError(f"unknown exit method kind {kind!r}; known kinds: {known_kinds()} (and their variants "
                         "<kind>_k<K>, <stateful kind>_fresh)")
    return derived


def is_trained(kind: str) -> bool:
    """True for a classifier kind that the distill rule trains."""
    return exit_method(kind).trained


def build_classifier(kind: str, hidden_size: int, options: dict[str, Any] | None = None) -> ExitClassifier:
    """A fresh (untrained) classifier of a trained kind."""
    method = exit_method(kind)
    if not method.trained:
        raise ValueError(f"{kind!r} is a training-free exit rule, not a classifier kind the distill rule trains")
    return exit_method(base_kind(kind)).cls(hidden_size, **(options or {}))


def base_kind(kind: str) -> str:
    """The registered kind a variant derives from (a registered kind is its own)."""
    found = VARIANT.match(kind)
    return found["base"] if kind not in EXIT_METHODS and found else kind


def training_free_rule(kind: str, threshold: float) -> ExitRule:
    method = exit_method(kind)
    if method.trained:
        raise ValueError(f"{kind!r} is a trained classifier kind; load it from its distill checkpoint")
    return method.cls(threshold)
