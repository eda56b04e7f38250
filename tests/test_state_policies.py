"""State policies do what they claim, checked on the cache contents after one early exit."""

from __future__ import annotations

import copy

import torch

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.engine import layer_stack

EXIT = 4  # layers executed before the exit (the tiny models have 8)


def prefill_then_exit(backbone: Backbone, policy: str):
    """Prefill a prompt through every layer, then run one decode step that exits after EXIT layers.

    Returns the stack, the cache before the step, the cache after it, and the exited hidden state.
    """
    stack = layer_stack(backbone.model)
    ids = backbone.tokenizer("The quick brown fox jumps over", return_tensors="pt").input_ids
    cache = stack.new_cache()
    with torch.inference_mode():
        hidden = stack.embed(ids)
        inputs = stack.step_inputs(hidden, cache, torch.ones_like(ids))
        for index in range(stack.num_layers):
            hidden = stack.layer(index, hidden, cache, inputs)
        before = copy.deepcopy(cache)
        token = ids[:, -1:]
        hidden = stack.embed(token)
        inputs = stack.step_inputs(hidden, cache, torch.ones(1, ids.shape[1] + 1, dtype=torch.long))
        for index in range(EXIT):
            hidden = stack.layer(index, hidden, cache, inputs)
        exited = hidden.clone()
        scratch = copy.deepcopy(cache)  # for the reference: the skipped layers' own full forward
        stack.fill_skipped(policy, EXIT, hidden, cache, inputs)
    return stack, before, cache, scratch, exited, inputs


def test_copy_reuses_the_exit_layers_kv(tiny_mistral: Backbone) -> None:
    stack, _, cache, _, _, _ = prefill_then_exit(tiny_mistral, "copy")
    last = cache.layers[EXIT - 1]
    for index in range(EXIT, stack.num_layers):
        layer = cache.layers[index]
        assert layer.keys.shape == last.keys.shape
        assert torch.equal(layer.keys[:, :, -1], last.keys[:, :, -1])
        assert torch.equal(layer.values[:, :, -1], last.values[:, :, -1])


def test_partial_gives_each_layer_its_own_kv_of_the_exited_state(tiny_mistral: Backbone) -> None:
    stack, _, cache, scratch, exited, inputs = prefill_then_exit(tiny_mistral, "partial")
    with torch.inference_mode():
        for index in range(EXIT, stack.num_layers):
            # Reference: the layer's full forward on the exited state appends exactly its K/V.
            stack.layer(index, exited, scratch, inputs)
            assert torch.allclose(cache.layers[index].keys[:, :, -1], scratch.layers[index].keys[:, :, -1], atol=1e-6)
            assert torch.allclose(cache.layers[index].values[:, :, -1], scratch.layers[index].values[:, :, -1], atol=1e-6)
    last = cache.layers[EXIT - 1]
    assert not torch.equal(cache.layers[EXIT].keys[:, :, -1], last.keys[:, :, -1])


def states(cache, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    layer = cache.layers[index]
    return layer.conv_states[0].clone(), layer.recurrent_states[0].clone()


def test_mamba_skip_leaves_skipped_states_untouched(tiny_mamba2: Backbone) -> None:
    stack, before, cache, _, _, _ = prefill_then_exit(tiny_mamba2, "skip")
    for index in range(stack.num_layers):
        conv, ssm = states(cache, index)
        conv0, ssm0 = states(before, index)
        if index < EXIT:
            assert not torch.equal(ssm, ssm0), f"executed layer {index} should have advanced"
        else:
            assert torch.equal(conv, conv0) and torch.equal(ssm, ssm0), f"skipped layer {index} changed"


def test_mamba_partial_advances_skipped_states_with_the_mixer_step(tiny_mamba2: Backbone) -> None:
    stack, before, cache, scratch, exited, inputs = prefill_then_exit(tiny_mamba2, "partial")
    with torch.inference_mode():
        for index in range(EXIT, stack.num_layers):
            stack.layer(index, exited, scratch, inputs)  # the block's own step on the exited state
            conv, ssm = states(cache, index)
            ref_conv, ref_ssm = states(scratch, index)
            assert torch.allclose(conv, ref_conv, atol=1e-6) and torch.allclose(ssm, ref_ssm, atol=1e-6)
            assert not torch.equal(ssm, states(before, index)[1])
