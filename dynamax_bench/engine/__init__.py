"""The early-exit engine: layer stacks, exit rules and the generator that drives them.

Names are imported on first use (PEP 562), so the torch-free `engine.policies` can be read by the
Snakefile and the profile checks without loading torch and transformers.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "EarlyExitGenerator": "generator",
    "Generation": "generator",
    "Strategy": "generator",
    "ClassifierRule": "rules",
    "ConstantRule": "rules",
    "ExitPoint": "rules",
    "ExitRule": "rules",
    "LayerStack": "stacks",
    "Mamba2Stack": "stacks",
    "TransformerStack": "stacks",
    "layer_stack": "stacks",
}

if TYPE_CHECKING:
    from dynamax_bench.engine.generator import EarlyExitGenerator, Generation, Strategy
    from dynamax_bench.engine.rules import ClassifierRule, ConstantRule, ExitPoint, ExitRule
    from dynamax_bench.engine.stacks import LayerStack, Mamba2Stack, TransformerStack, layer_stack


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)


__all__ = sorted(_EXPORTS)
