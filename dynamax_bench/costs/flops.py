"""The `flops` rule: fvcore counts of every block the early-exit engine runs, at fixed shapes.

Blocks: one decoder layer (prefill of `context_length` tokens, and one decode step after that
many), the final norm + LM head for one token, the partial-forward work a state policy does for
one skipped layer, and one step of each exit method (trained classifier kinds at their configured
options; training-free rules). Each count traces the library's own modules (through the engine's
layer stack, so the traced code is the code that runs) with fvcore.

Unit: fvcore's, one multiply-accumulate (MAC) = 1 flop for matrix products, convolutions and
einsums. Work fvcore skips gets op handles here: `scaled_dot_product_attention` (QK^T and PV, two
products of Lq x Lk x head_dim per head), and elementwise multiplications, divisions and
exponentials at one per output element, softmax at two (the recurrent SSM update of the Mamba-2 decode step is
elementwise); additions are not counted apart (the add half of a MAC). What stays uncounted is
listed with every count.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape
from torch import Tensor, nn

from dynamax_bench.backbones.prepare import load_backbone
from dynamax_bench.config import exit_positions
from dynamax_bench.engine.stacks import LayerStack, TransformerStack, layer_stack
from dynamax_bench.classifiers.registry import build_classifier, is_trained
from dynamax_bench.files import write_json

log = logging.getLogger(__name__)

UNIT = "fvcore flops: 1 multiply-accumulate = 1; elementwise mul/div/exp = 1 per element; adds not counted apart"


def _numel_of_output(inputs: list[Any], outputs: list[Any]) -> int:
    return math.prod(get_shape(outputs[0]) or [1])


def _sdpa(inputs: list[Any], outputs: list[Any]) -> int:
    """QK^T and PV: 2 x batch x heads x Lq x Lk x head_dim (the full score matrix, as sdpa computes it)."""
    q, k = get_shape(inputs[0]), get_shape(inputs[1])
    *batch, lq, d = q
    return 2 * math.prod(batch) * lq * k[-2] * d


def _softmax(inputs: list[Any], outputs: list[Any]) -> int:
    return 2 * _numel_of_output(inputs, outputs)  # an exponential and a division per element


def _cosine(inputs: list[Any], outputs: list[Any]) -> int:
    return 3 * math.prod(get_shape(inputs[0]))  # dot product and the two norms


HANDLES: dict[str, Callable] = {
    "aten::scaled_dot_product_attention": _sdpa,
    "aten::mul": _numel_of_output,
    "aten::mul_": _numel_of_output,
    "aten::div": _numel_of_output,
    "aten::exp": _numel_of_output,
    "aten::softmax": _softmax,
    "aten::cosine_similarity": _cosine,
}


def count(module: nn.Module, inputs: tuple[Tensor, ...]) -> dict[str, Any]:
    """fvcore's count of one forward, by operator, with the ops it left uncounted."""
    analysis = FlopCountAnalysis(module, inputs).set_op_handle(**HANDLES)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow in the masks
        total = analysis.total()
    return {
        "flops": int(total),
        "by_operator": {k: int(v) for k, v in sorted(analysis.by_operator().items())},
        "uncounted": dict(sorted(analysis.unsupported_ops().items())),
    }


class _Traced(nn.Module):
    """Holds the model as a submodule (so its weights are parameters to the tracer) and runs `fn`."""

    def __init__(self, model: nn.Module, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, hidden: Tensor) -> Tensor:
        return self.fn(hidden)


def _filled_cache(stack: LayerStack, context_length: int) -> Any:
    """A cache holding `context_length` positions of every layer (random hidden states)."""
    cache = stack.new_cache()
    hidden = torch.randn(1, context_length, stack.config.hidden_size, dtype=stack.model.dtype)
    with torch.no_grad():
        inputs = stack.step_inputs(hidden, cache, torch.ones(1, context_length, dtype=torch.long))
        for index in range(stack.num_layers):
            hidden = stack.layer(index, hidden, cache, inputs)
    return cache


def backbone_blocks(stack: LayerStack, context_length: int) -> dict[str, dict]:
    """Layer prefill and decode, head, and partial-forward work, for layer 0 (all layers are alike)."""
    d = stack.config.hidden_size
    model = stack.model
    filled = _filled_cache(stack, context_length)

    def prefill(hidden: Tensor) -> Tensor:
        cache = stack.new_cache()
        inputs = stack.step_inputs(hidden, cache, torch.ones(1, hidden.shape[1], dtype=torch.long))
        return stack.layer(0, hidden, cache, inputs)

    def decode(hidden: Tensor) -> Tensor:
        cache = copy.deepcopy(filled)
        inputs = stack.step_inputs(hidden, cache, torch.ones(1, context_length + 1, dtype=torch.long))
        return stack.layer(0, hidden, cache, inputs)

    def partial(hidden: Tensor) -> Tensor:
        cache = copy.deepcopy(filled)
        if isinstance(stack, TransformerStack):
            inputs = stack.step_inputs(hidden, cache, torch.ones(1, context_length + 1, dtype=torch.long))
            keys, values = stack.partial_kv(0, hidden, *inputs["position_embeddings"])
            return keys.sum() + values.sum()
        return stack.partial_step(0, hidden, cache)

    one = torch.randn(1, 1, d, dtype=model.dtype)
    blocks = {
        "layer_prefill": {**count(_Traced(model, prefill), (torch.randn(1, context_length, d, dtype=model.dtype),)),
                          "tokens": context_length},
        "layer_decode": count(_Traced(model, decode), (one,)),
        "head": count(_Traced(model, stack.head), (one,)),
        "head_prefill": {**count(_Traced(model, lambda h: stack.head_all(h)), (torch.randn(1, context_length, d),)),
                         "tokens": context_length},
    }
    blocks["fill_partial"] = count(_Traced(model, partial), (one,))
    for policy in stack.policies:
        if policy != "partial":  # copy (Transformer) and skip (Mamba-2): no recomputation
            blocks[f"fill_{policy}"] = {"flops": 0, "by_operator": {}, "uncounted": {}}
    return blocks


def exit_method_step(kind: str, options: dict, stack: LayerStack, blocks: dict, context_length: int) -> dict:
    """One decision at one exit for one token: a classifier step, or a training-free rule."""
    d = stack.config.hidden_size
    one = torch.randn(1, 1, d)
    if is_trained(kind):
        clf = build_classifier(kind, d, options).eval().requires_grad_(False)
        if clf.stateful:
            state = clf.new_state()
            with torch.no_grad():
                clf(torch.randn(1, context_length, d), state)
            result = count(_Traced(clf, lambda h: clf(h, copy.deepcopy(state))), (one,))
        else:
            result = count(_Traced(clf, lambda h: clf(h)), (one,))
        return {**result, "parameters": sum(p.numel() for p in clf.parameters())}
    if kind == "maxsoftmax":
        softmax = count(nn.Softmax(dim=-1), (torch.randn(1, stack.config.vocab_size),))
        return {"flops": blocks["head"]["flops"] + softmax["flops"], "parameters": 0,
                "by_operator": {"head": blocks["head"]["flops"], **softmax["by_operator"]},
                "uncounted": softmax["uncounted"], "note": "the LM head read at the exit, then a softmax"}
    if kind == "saturation":
        cos = count(_Traced(nn.Identity(), lambda h: torch.cosine_similarity(h, h.flip(-1), dim=-1)), (one,))
        return {**cos, "parameters": 0}
    raise ValueError(f"no FLOPs model for exit method {kind!r}: add one to dynamax_bench/costs/flops.py")


def flops_table(backbone_dir: str | Path, out_path: str | Path, *, context_length: int, kinds: list[str],
                options: dict[str, dict], exits: dict) -> dict:
    """Write results/<profile>/flops/<backbone>.json."""
    backbone = load_backbone(backbone_dir, "cpu", "float32")  # counts do not depend on device or dtype
    backbone.model.requires_grad_(False)
    stack = layer_stack(backbone.model)
    blocks = backbone_blocks(stack, context_length)
    methods = {
        kind: exit_method_step(kind, options.get(kind, {}), stack, blocks, context_length)
        for kind in kinds
    }
    model = backbone.model
    layer_params = sum(p.numel() for p in stack.layers[0].parameters())
    result = {
        "backbone": backbone.meta["name"],
        "backbone_label": backbone.meta["label"],
        "family": backbone.family,
        "unit": UNIT,
        "context_length": context_length,
        "num_layers": backbone.num_layers,
        "hidden_size": model.config.hidden_size,
        "exit_positions": exit_positions({"exits": exits}, backbone.num_layers),
        "blocks": blocks,
        "exit_methods": methods,
        "parameters": {
            "total": sum(p.numel() for p in model.parameters()),
            "layer": layer_params,
            "head": sum(p.numel() for p in model.lm_head.parameters()),
        },
    }
    write_json(out_path, result)
    log.info("%s: layer decode %d, head %d flops per token at context %d", backbone.meta["name"],
             blocks["layer_decode"]["flops"], blocks["head"]["flops"], context_length)
    return result


def whole_model_count(model: nn.Module, input_ids: Tensor) -> dict[str, Any]:
    """fvcore's count of the whole model's forward (logits at every position): the per-block check."""
    model.requires_grad_(False)
    return count(_Traced(model, lambda ids: model(ids, use_cache=False).logits), (input_ids,))

