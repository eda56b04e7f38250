"""The `flops` rule: fvcore counts of every block the early-exit engine runs, at fixed shapes.

Blocks: one decoder layer (prefill of `context_length` tokens, and one decode step after that
many), the final norm + LM head for one token, the partial-forward work a state policy does for
one skipped layer, and one step of each exit method (trained classifier kinds at their configured
options; training-free rules). Each count traces the library's own modules (through the engine's
layer stack, so the traced code is the code that runs) with fvcore.

The ledger also needs counts at other lengths: a layer over a prompt of any length, a decode step
after any number of cached positions, and a stateful classifier's pass over a prompt. Those come
as `per_length` / `prefill` length models (costs/lengths.py): fitted to fvcore counts at a few
lengths and checked against counts at others, so they give fvcore's count at every length.

Unit: fvcore's, one multiply-accumulate (MAC) = 1 flop for matrix products, convolutions and
einsums. Work fvcore skips gets op handles here: `scaled_dot_product_attention` (QK^T and PV, two
products of Lq x Lk x head_dim per head), and elementwise multiplications, divisions and
exponentials at one per output element, softmax at two (the recurrent SSM update of the Mamba-2 decode step is
elementwise); einsums at one per combination of their indices (exact, where fvcore's own handle
rounds numpy's report to four digits); additions are not counted apart (the add half of a MAC).
What stays uncounted is listed with every count.
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
from fvcore.nn.jit_handles import einsum_flop_jit, get_shape
from torch import Tensor, nn
from tqdm import tqdm

from dynamax_bench.backbones.prepare import load_backbone
from dynamax_bench.config import exit_positions
from dynamax_bench.engine.stacks import LayerStack, TransformerStack, layer_stack
from dynamax_bench.classifiers.registry import build_classifier, is_trained
from dynamax_bench.costs.lengths import fit_length_model
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


def _einsum(inputs: list[Any], outputs: list[Any]) -> int:
    """One multiply-accumulate per combination of all indices (a two-operand einsum, as the Mamba-2
    scan writes them). fvcore's own handle reads numpy's einsum_path report, printed to four
    significant digits, so its counts are not exact."""
    equation = inputs[0].toIValue().replace(" ", "")
    shapes = [get_shape(v) for v in inputs[1].node().inputs()]
    if len(shapes) != 2 or "." in equation:
        return int(einsum_flop_jit(inputs, outputs))
    sizes: dict[str, int] = {}
    for operand, shape in zip(equation.split("->")[0].split(","), shapes):
        sizes.update(zip(operand, shape))
    return math.prod(sizes.values())


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
    "aten::einsum": _einsum,
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


def layer_prefill_count(stack: LayerStack, length: int) -> dict[str, Any]:
    """fvcore's count of layer 0 over a prompt of `length` tokens, from an empty cache."""
    def prefill(hidden: Tensor) -> Tensor:
        cache = stack.new_cache()
        inputs = stack.step_inputs(hidden, cache, torch.ones(1, length, dtype=torch.long))
        return stack.layer(0, hidden, cache, inputs)

    return count(_Traced(stack.model, prefill), (torch.randn(1, length, stack.config.hidden_size, dtype=stack.model.dtype),))


def layer_decode_count(stack: LayerStack, context: int, filled: Any = None) -> dict[str, Any]:
    """fvcore's count of one decode step of layer 0 with `context` positions cached."""
    filled = filled if filled is not None else _filled_cache(stack, context)

    def decode(hidden: Tensor) -> Tensor:
        cache = copy.deepcopy(filled)
        inputs = stack.step_inputs(hidden, cache, torch.ones(1, context + 1, dtype=torch.long))
        return stack.layer(0, hidden, cache, inputs)

    return count(_Traced(stack.model, decode), (torch.randn(1, 1, stack.config.hidden_size, dtype=stack.model.dtype),))


def layer_verify_count(stack: LayerStack, context: int, new: int) -> dict[str, Any]:
    """fvcore's count of layer 0 over `new` positions at once with `context` positions cached: a
    Transformer layer's share of a self-speculative verification pass."""
    filled = _filled_cache(stack, context)

    def verify(hidden: Tensor) -> Tensor:
        cache = copy.deepcopy(filled)
        positions = torch.arange(context, context + new).unsqueeze(0)
        inputs = stack.step_inputs(hidden, cache, torch.ones(1, context + new, dtype=torch.long), position_ids=positions)
        return stack.layer(0, hidden, cache, inputs)

    return count(_Traced(stack.model, verify), (torch.randn(1, new, stack.config.hidden_size, dtype=stack.model.dtype),))


def _layer_form(stack: LayerStack) -> dict[str, Any]:
    """The length form of one layer's prefill: chunked for a Mamba-2 mixer, else polynomial."""
    if isinstance(stack, TransformerStack):
        return {"form": "polynomial", "degree": 2}
    return {"form": "chunked", "chunk": stack.config.chunk_size}


def backbone_blocks(stack: LayerStack, context_length: int) -> dict[str, dict]:
    """Layer prefill and decode, head, and partial-forward work, for layer 0 (all layers are alike).

    `layer_prefill` and `layer_decode` are counted at `context_length` (Table 1) and carry
    `per_length`: the exact count at any prompt length, and at any number of cached positions. A
    Transformer also gets `layer_verify`: a layer over m >= 2 new positions after t cached
    (self-speculative verification), as a length model of (t, m); m = 1 is `layer_decode`.
    """
    d = stack.config.hidden_size
    model = stack.model
    filled = _filled_cache(stack, context_length)

    def partial(hidden: Tensor) -> Tensor:
        cache = copy.deepcopy(filled)
        if isinstance(stack, TransformerStack):
            inputs = stack.step_inputs(hidden, cache, torch.ones(1, context_length + 1, dtype=torch.long))
            keys, values = stack.partial_kv(0, hidden, *inputs["position_embeddings"])
            return keys.sum() + values.sum()
        return stack.partial_step(0, hidden, cache)

    one = torch.randn(1, 1, d, dtype=model.dtype)
    prefill = layer_prefill_count(stack, context_length)
    decode = layer_decode_count(stack, context_length, filled)
    # a sliding window caps the cache, and with it a decode step's attention, past the window
    window = getattr(stack.config, "sliding_window", None) if isinstance(stack, TransformerStack) else None
    prefill_model = fit_length_model(
        lambda t: (prefill if t == context_length else layer_prefill_count(stack, t))["flops"],
        **_layer_form(stack), around=context_length)
    decode_model = fit_length_model(
        lambda t: (decode if t == context_length else layer_decode_count(stack, t))["flops"],
        "polynomial", degree=1, around=context_length, valid_below=window)
    blocks = {
        "layer_prefill": {**prefill, "tokens": context_length, "per_length": prefill_model.to_dict()},
        "layer_decode": {**decode, "per_length": decode_model.to_dict()},
        "head": count(_Traced(model, stack.head), (one,)),
        "head_prefill": {**count(_Traced(model, lambda h: stack.head_all(h)), (torch.randn(1, context_length, d),)),
                         "tokens": context_length},
    }
    if isinstance(stack, TransformerStack):  # a Mamba-2 layer verifies by recurrent steps: layer_decode each
        verify_model = fit_length_model(lambda length: layer_verify_count(stack, *length)["flops"], "extend",
                                        around=context_length, valid_below=window)
        blocks["layer_verify"] = {**layer_verify_count(stack, context_length, 2), "new_positions": 2,
                                  "per_length": verify_model.to_dict()}
    blocks["fill_partial"] = count(_Traced(model, partial), (one,))
    for policy in stack.policies:
        if policy != "partial":  # copy (Transformer) and skip (Mamba-2): no recomputation
            blocks[f"fill_{policy}"] = {"flops": 0, "by_operator": {}, "uncounted": {}}
    return blocks


def _classifier_prefill(clf: nn.Module, d: int, context_length: int) -> dict:
    """A stateful classifier's pass over a prompt from a fresh state, as a length model."""
    def at(length: int) -> int:
        return count(_Traced(clf, lambda h: clf(h, clf.new_state())), (torch.randn(1, length, d),))["flops"]

    chunk = getattr(getattr(clf, "config", None), "chunk_size", None)
    form = {"form": "chunked", "chunk": chunk} if chunk else {"form": "polynomial", "degree": 2}
    return fit_length_model(at, **form, around=context_length).to_dict()


def exit_method_step(kind: str, options: dict, stack: LayerStack, blocks: dict, context_length: int) -> dict:
    """One decision at one exit for one token: a classifier step, or a training-free rule; a
    stateful classifier also gets `prefill`, its pass over a prompt, as a length model."""
    d = stack.config.hidden_size
    one = torch.randn(1, 1, d)
    if is_trained(kind):
        clf = build_classifier(kind, d, options).eval().requires_grad_(False)
        if clf.stateful:
            state = clf.new_state()
            with torch.no_grad():
                clf(torch.randn(1, context_length, d), state)
            result = count(_Traced(clf, lambda h: clf(h, copy.deepcopy(state))), (one,))
            result["prefill"] = _classifier_prefill(clf, d, context_length)
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
    # the backbone's blocks (each traced at several lengths) take most of the time: an hour at 7B
    with tqdm(total=1 + len(kinds), desc=f"flops {backbone.meta['name']}", unit="block") as progress:
        progress.set_postfix_str("layers, head, fills")
        blocks = backbone_blocks(stack, context_length)
        progress.update()
        methods = {}
        for kind in kinds:
            progress.set_postfix_str(f"exit method {kind}")
            methods[kind] = exit_method_step(kind, options.get(kind, {}), stack, blocks, context_length)
            progress.update()
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

