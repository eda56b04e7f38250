"""The early-exit engine: layer stacks, exit rules, the batch-1 reference generator and the
batched generator that reproduces it."""

from dynamax_bench.engine.batched import BatchedGenerator
from dynamax_bench.engine.correctness import Agreement, verify
from dynamax_bench.engine.generator import EarlyExitGenerator, Generation, Strategy
from dynamax_bench.engine.neartie import NearTie
from dynamax_bench.engine.rowstate import RowState
from dynamax_bench.engine.rules import ClassifierRule, ConstantRule, ExitPoint, ExitRule
from dynamax_bench.engine.stacks import LayerStack, Mamba2Stack, TransformerStack, layer_stack

__all__ = [
    "Agreement",
    "BatchedGenerator",
    "ClassifierRule",
    "ConstantRule",
    "EarlyExitGenerator",
    "ExitPoint",
    "ExitRule",
    "Generation",
    "LayerStack",
    "Mamba2Stack",
    "NearTie",
    "RowState",
    "Strategy",
    "TransformerStack",
    "layer_stack",
    "verify",
]
