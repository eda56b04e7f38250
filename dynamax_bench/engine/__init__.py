"""The early-exit engine: layer stacks, exit rules and the generator that drives them."""

from dynamax_bench.engine.generator import EarlyExitGenerator, Generation, Strategy
from dynamax_bench.engine.rules import ClassifierRule, ConstantRule, ExitPoint, ExitRule
from dynamax_bench.engine.stacks import LayerStack, Mamba2Stack, TransformerStack, layer_stack

__all__ = [
    "ClassifierRule",
    "ConstantRule",
    "EarlyExitGenerator",
    "ExitPoint",
    "ExitRule",
    "Generation",
    "LayerStack",
    "Mamba2Stack",
    "Strategy",
    "TransformerStack",
    "layer_stack",
]
