"""The early-exit engine: layer stacks, exit rules, the batch-1 reference generator and the
batched generator that reproduces it.

Names are imported on first use (PEP 562), so the torch-free `engine.policies` can be read by the
Snakefile and the profile checks without loading torch and transformers.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Agreement": "correctness",
    "BatchedGenerator": "batched",
    "ClassifierRule": "rules",
    "ConstantRule": "rules",
    "EarlyExitGenerator": "generator",
    "ExitPoint": "rules",
    "ExitRule": "rules",
    "Generation": "generator",
    "LayerStack": "stacks",
    "Mamba2Stack": "stacks",
    "NearTie": "neartie",
    "PromptPass": "generator",
    "RecurrentStates": "static",
    "RowState": "rowstate",
    "StaticKV": "static",
    "Strategy": "generator",
    "TransformerStack": "stacks",
    "layer_stack": "stacks",
    "verify": "correctness",
    "verify_each": "correctness",
}

if TYPE_CHECKING:
    from dynamax_bench.engine.batched import BatchedGenerator
    from dynamax_bench.engine.correctness import Agreement, verify, verify_each
    from dynamax_bench.engine.generator import EarlyExitGenerator, Generation, PromptPass, Strategy
    from dynamax_bench.engine.neartie import NearTie
    from dynamax_bench.engine.rowstate import RowState
    from dynamax_bench.engine.rules import ClassifierRule, ConstantRule, ExitPoint, ExitRule
    from dynamax_bench.engine.static import RecurrentStates, StaticKV
    from dynamax_bench.engine.stacks import LayerStack, Mamba2Stack, TransformerStack, layer_stack


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)


__all__ = sorted(_EXPORTS)
