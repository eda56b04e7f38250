"""The static decode cache (engine/static.py): several tokens in one step, per-row rollback, and the
library's own cache as the reference (the API a self-speculative verifier builds on)."""

from __future__ import annotations

import pytest
import torch

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.engine import layer_stack
from dynamax_bench.engine.static import StaticKV

PROMPT = "The quick brown fox jumps over the lazy"


def prefill(backbone: Backbone, ids: torch.Tensor):
    """The prompt through every layer on the library's cache: (stack, cache, last hidden)."""
    stack = layer_stack(backbone.model)
    cache = stack.new_cache()
    hidden = stack.embed(ids)
    inputs = stack.step_inputs(hidden, cache, torch.ones_like(ids))
    for index in range(stack.num_layers):
        hidden = stack.layer(index, hidden, cache, inputs)
    return stack, cache, hidden


def step(stack, cache: StaticKV, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """`tokens` (B, k) through every layer as one step on the static cache; the last layer's output."""
    count = tokens.shape[1]
    cache.begin(count)
    hidden = stack.embed(tokens)
    position_ids = positions[:, None] + torch.arange(count)
    inputs = {"attention_mask": cache.attention_mask(count), "position_ids": position_ids,
              "position_embeddings": stack.inner.rotary_emb(hidden, position_ids=position_ids)}
    for index in range(stack.num_layers):
        hidden = stack.layer(index, hidden, cache, inputs)
    cache.end(count)
    return hidden


def static_copy(stack, cache, ids: torch.Tensor, rows: int = 1) -> StaticKV:
    width = ids.shape[1]
    if rows > 1:
        cache.reorder_cache(torch.zeros(rows, dtype=torch.long))  # the same prompt in every row
    return StaticKV.from_cache(cache, torch.ones(rows, width, dtype=torch.long), stack.num_layers, width + 8,
                               [0] * rows, [False] * rows)


@torch.inference_mode()
def test_one_step_of_several_tokens_equals_them_one_at_a_time(tiny_mistral: Backbone) -> None:
    ids = tiny_mistral.tokenizer(PROMPT, return_tensors="pt").input_ids
    draft = torch.tensor([[11, 12, 13]])
    stack, cache, _ = prefill(tiny_mistral, ids)
    together = step(stack, static_copy(stack, cache, ids), draft, torch.tensor([ids.shape[1]]))
    stack, cache, _ = prefill(tiny_mistral, ids)
    one_by_one = static_copy(stack, cache, ids)
    outs = [step(stack, one_by_one, draft[:, k:k + 1], torch.tensor([ids.shape[1] + k])) for k in range(3)]
    torch.testing.assert_close(together, torch.cat(outs, dim=1), atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_rolling_rows_back_forgets_their_rejected_tokens(tiny_mistral: Backbone) -> None:
    """Two rows verify three draft tokens; row 0 keeps one, row 1 all three. The next token of each
    row is what a cache that never saw the rejected tokens gives."""
    ids = tiny_mistral.tokenizer(PROMPT, return_tensors="pt").input_ids
    length = ids.shape[1]
    stack, cache, _ = prefill(tiny_mistral, ids)
    static = static_copy(stack, cache, ids, rows=2)
    step(stack, static, torch.tensor([[11, 12, 13], [21, 22, 23]]), torch.tensor([length, length]))
    static.rollback([2, 0])
    assert static.host_ends == [length + 1, length + 3]
    assert static.mask.sum(1).tolist() == [length + 1, length + 3]
    after = step(stack, static, torch.tensor([[14], [24]]), torch.tensor([length + 1, length + 3]))
    for row, kept in ((0, [11, 14]), (1, [21, 22, 23, 24])):
        stack, cache, _ = prefill(tiny_mistral, ids)
        fresh = static_copy(stack, cache, ids)
        expected = step(stack, fresh, torch.tensor([kept]), torch.tensor([length]))
        torch.testing.assert_close(after[row, -1], expected[0, -1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="cannot roll back"):
        static.rollback([length + 5, 0])


@torch.inference_mode()
def test_rows_leaving_move_down_in_place_and_the_next_step_is_unchanged(tiny_mistral: Backbone) -> None:
    """Rows 1 and 3 of four leave: the two kept rows move down in the same buffers (no copy of the
    cache), and the next step gives, bit for bit, what it gives on a copy holding those rows alone."""
    ids = tiny_mistral.tokenizer(PROMPT, return_tensors="pt").input_ids
    length = ids.shape[1]
    stack, cache, _ = prefill(tiny_mistral, ids)
    static = static_copy(stack, cache, ids, rows=4)
    step(stack, static, torch.tensor([[11, 12], [21, 22], [31, 32], [41, 42]]), torch.full((4,), length))
    kept = [0, 2]
    index = torch.tensor(kept)
    alone = StaticKV(static.keys.index_select(1, index), static.values.index_select(1, index),
                     static.mask.index_select(0, index), [static.host_ends[r] for r in kept], [0, 0], [False, False])
    buffer = static.keys.data_ptr()
    static.keep(kept)
    assert static.keys.data_ptr() == buffer and static.keys.shape == alone.keys.shape
    assert static.keys[0].stride() == alone.keys[0].stride()
    positions = torch.full((2,), length + 2)
    moved = step(stack, static, torch.tensor([[13], [33]]), positions)
    copied = step(stack, alone, torch.tensor([[13], [33]]), positions)
    assert torch.equal(moved, copied)
    assert torch.equal(static.keys, alone.keys) and torch.equal(static.values, alone.values)
