"""Layer stacks: drive a transformers causal LM one decoder layer at a time.

Each stack calls the library's own modules (embedding, decoder layers or Mamba-2 blocks,
final norm, LM head) and cache objects in the same order as the model's `forward`, so the
full path reproduces `model.generate` bit for bit. What a stack adds are the state policies,
which decide what the caches of skipped layers receive after an early exit: `fill_layer` on the
reference path's transformers cache, `fill_exited` on the batched engine's static cache
(engine/static.py), where a layer runs on the rows that have not exited (`run_rows`) and the
rows that left get their entries after the step, from the policy.

Shapes: hidden states are (B, seq, hidden); logits are float32 (B, vocab).
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor
from transformers import PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import (
    create_causal_mask,
    create_recurrent_attention_mask,
    create_sliding_window_causal_mask,
)

from dynamax_bench.engine.policies import POLICIES
from dynamax_bench.engine.static import RecurrentStates, StaticKV

TRANSFORMER_TYPES = ("llama", "mistral")
MAMBA2_TYPES = ("mamba2",)


class LayerStack(ABC):
    """One backbone seen as: embed -> layer 0 .. layer L-1 -> final norm + head."""

    family: ClassVar[str]
    policies: ClassVar[tuple[str, ...]]

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self.config = model.config
        self.num_layers: int = model.config.num_hidden_layers

    def new_cache(self) -> Cache:
        return DynamicCache(config=self.config)

    @abstractmethod
    def embed(self, input_ids: Tensor) -> Tensor: ...

    @abstractmethod
    def step_inputs(
        self, hidden: Tensor, cache: Cache, attention_mask: Tensor, position_ids: Tensor | None = None,
        layer_idx: int | None = None,
    ) -> dict[str, Any]:
        """What every layer of one forward step needs (masks, positions), built once per step.

        attention_mask: (B, cached + seq), 0 on padding. position_ids: (B, seq), each row's real
        positions; by default the positions after the cache's length (no padding). layer_idx: the
        layer whose cache sizes the step (default the first); a step over the upper layers only, whose
        caches hold fewer positions than the lower ones (self-speculative verification), names its first."""

    @abstractmethod
    def layer(self, index: int, hidden: Tensor, cache: Cache, inputs: dict[str, Any]) -> Tensor: ...

    @abstractmethod
    def final_hidden(self, hidden: Tensor) -> Tensor:
        """The final norm, applied to the exited (or last) hidden state."""

    @abstractmethod
    def logits(self, normed: Tensor) -> Tensor:
        """LM head on the last position of a normed hidden state, as float32 (B, vocab)."""

    def head(self, hidden: Tensor) -> Tensor:
        return self.logits(self.final_hidden(hidden))

    def head_all(self, hidden: Tensor) -> Tensor:
        """Final norm + LM head at every position: float32 logits (B, T, vocab)."""
        lm_head = self.model.lm_head
        return lm_head(self.final_hidden(hidden).to(lm_head.weight.dtype)).float()

    @abstractmethod
    def fill_layer(self, policy: str, index: int, hidden: Tensor, cache: Cache, inputs: dict[str, Any]) -> None:
        """Give layer `index` its cache entries for this position when every row left before it;
        hidden (B, 1, d) holds each row's exited state."""

    @abstractmethod
    def static_cache(self, cache: Cache, layers: int, capacity: int, mask: Tensor, starts: list[int],
                     holes: list[bool]) -> StaticKV | RecurrentStates:
        """The batched engine's decode cache, a copy of a prompt pass's `cache` (its first `layers` layers;
        transformers: left-padded rows, `mask` (B, T) 0 on padding, room for `capacity` positions per row)."""

    @abstractmethod
    def decode_inputs(self, hidden: Tensor, cache: StaticKV | RecurrentStates, positions: Tensor) -> dict[str, Any]:
        """What every layer of a decode step on the static cache needs; positions (B,): each row's new position."""

    @staticmethod
    def rows_inputs(inputs: dict[str, Any], rows: Tensor) -> dict[str, Any]:
        """`decode_inputs` of some rows (long (n,)), for the layers only they run."""
        return {key: _select(value, rows) for key, value in inputs.items()}

    def run_rows(self, index: int, hidden: Tensor, cache: StaticKV | RecurrentStates, inputs: dict[str, Any],
                 rows: Tensor | None) -> Tensor:
        """Layer `index` on the static cache for `rows` only (None: every row); hidden and inputs are those rows'."""
        cache.select(rows)
        out = self.layer(index, hidden, cache, inputs)
        cache.release()
        return out

    @abstractmethod
    def skips_work(self, policy: str) -> bool:
        """Whether rows that exited leave the later layers' computation under this policy (False: the
        policy runs those layers on them anyway, and the engine runs every row, keeping their exit state)."""

    @abstractmethod
    def fill_exited(self, policy: str, cache: StaticKV | RecurrentStates, groups: list[tuple[int, Tensor]],
                    hidden: Tensor, inputs: dict[str, Any]) -> None:
        """After a decode step on the static cache: give the rows that exited (groups of (layers executed,
        rows)) their entries in the layers they skipped; hidden (B, 1, d) holds every row's exited state."""

    def fill_skipped(self, policy: str, executed: int, hidden: Tensor, cache: Cache, inputs: dict[str, Any]) -> None:
        """Give layers executed..L-1 their cache entries for this position after an exit."""
        self.check_policy(policy)
        for index in range(executed, self.num_layers):
            self.fill_layer(policy, index, hidden, cache, inputs)

    def check_policy(self, policy: str) -> None:
        if policy not in self.policies:
            raise ValueError(f"state policy {policy!r} does not apply to a {self.family} backbone; use {list(self.policies)}")


class TransformerStack(LayerStack):
    """Llama and Mistral decoder stacks (RoPE, optional sliding window, DynamicCache K/V)."""

    family = "transformer"
    policies = POLICIES[family]

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__(model)
        self.inner = model.model
        self.layers = self.inner.layers
        sliding = getattr(self.config, "sliding_window", None)
        self._mask_fn = create_sliding_window_causal_mask if sliding else create_causal_mask
        # The model's own rotary helper, from its modeling module (no re-implemented RoPE).
        self._apply_rope = sys.modules[type(self.layers[0].self_attn).__module__].apply_rotary_pos_emb

    def embed(self, input_ids: Tensor) -> Tensor:
        return self.inner.embed_tokens(input_ids)

    def step_inputs(
        self, hidden: Tensor, cache: Cache, attention_mask: Tensor, position_ids: Tensor | None = None,
        layer_idx: int | None = None,
    ) -> dict[str, Any]:
        if position_ids is None:
            past = cache.get_seq_length(layer_idx or 0)
            position_ids = torch.arange(past, past + hidden.shape[1], device=hidden.device).unsqueeze(0)
        mask = self._mask_fn(
            config=self.config,
            inputs_embeds=hidden,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
            layer_idx=layer_idx,
        )
        return {
            "attention_mask": mask,
            "position_ids": position_ids,
            "position_embeddings": self.inner.rotary_emb(hidden, position_ids=position_ids),
        }

    def layer(self, index: int, hidden: Tensor, cache: Cache, inputs: dict[str, Any]) -> Tensor:
        return self.layers[index](hidden, cache=cache, use_cache=True, **inputs)

    def final_hidden(self, hidden: Tensor) -> Tensor:
        return self.inner.norm(hidden)

    def logits(self, normed: Tensor) -> Tensor:
        return self.model.lm_head(normed[:, -1, :]).float()

    def fill_layer(self, policy: str, index: int, hidden: Tensor, cache: Cache, inputs: dict[str, Any]) -> None:
        if policy == "copy":
            # The previous layer's K/V at this position: the last executed layer's, or a copy of it.
            keys, values = self.last_kv(cache, index - 1)
        elif policy == "partial":
            keys, values = self.partial_kv(index, hidden, *inputs["position_embeddings"])
        else:
            self.check_policy(policy)
        cache.update(keys, values, index)

    def static_cache(self, cache: Cache, layers: int, capacity: int, mask: Tensor, starts: list[int],
                     holes: list[bool]) -> StaticKV:
        return StaticKV.from_cache(cache, mask, layers, capacity, starts, holes)

    def decode_inputs(self, hidden: Tensor, cache: StaticKV, positions: Tensor) -> dict[str, Any]:
        position_ids = positions[:, None]
        return {
            "attention_mask": cache.attention_mask(),
            "position_ids": position_ids,
            "position_embeddings": self.inner.rotary_emb(hidden, position_ids=position_ids),
        }

    def skips_work(self, policy: str) -> bool:
        self.check_policy(policy)
        return True  # copy reads the last executed layer's K/V; partial projects K/V only

    def fill_exited(self, policy: str, cache: StaticKV, groups: list[tuple[int, Tensor]], hidden: Tensor,
                    inputs: dict[str, Any]) -> None:
        if not groups:
            return
        layers = cache.keys.shape[0]
        if policy == "copy":  # every skipped layer gets the last executed layer's K/V at this position
            for executed, rows in groups:
                cache.write_slot(slice(executed, layers), rows, *cache.slot_kv(executed - 1, rows))
            return
        self.check_policy(policy)
        cos, sin = inputs["position_embeddings"]
        for index in range(min(executed for executed, _ in groups), layers):
            rows = torch.cat([r for executed, r in groups if executed <= index])
            keys, values = self.partial_kv(index, hidden.index_select(0, rows), cos.index_select(0, rows),
                                           sin.index_select(0, rows))
            cache.write_slot(slice(index, index + 1), rows, keys[:, :, 0], values[:, :, 0])

    @staticmethod
    def last_kv(cache: Cache, index: int) -> tuple[Tensor, Tensor]:
        """Views of layer `index`'s K/V at the newest position, (B, kv_heads, 1, head_dim)."""
        layer = cache.layers[index]
        return layer.keys[:, :, -1:, :], layer.values[:, :, -1:, :]

    def partial_kv(self, index: int, hidden: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
        """K/V that layer `index` computes for `hidden`: its input norm, K/V projections and RoPE only."""
        layer = self.layers[index]
        attn = layer.self_attn
        normed = layer.input_layernorm(hidden)
        shape = (*hidden.shape[:-1], -1, attn.head_dim)  # (B, seq, kv_heads, head_dim)
        keys = attn.k_proj(normed).view(shape).transpose(1, 2)
        values = attn.v_proj(normed).view(shape).transpose(1, 2)
        _, keys = self._apply_rope(keys, keys, cos, sin)
        return keys, values


class Mamba2Stack(LayerStack):
    """Mamba-2 blocks with the library's conv + SSM state cache."""

    family = "mamba2"
    policies = POLICIES[family]

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__(model)
        self.inner = model.backbone
        self.layers = self.inner.layers

    def embed(self, input_ids: Tensor) -> Tensor:
        return self.inner.embeddings(input_ids)

    def step_inputs(
        self, hidden: Tensor, cache: Cache, attention_mask: Tensor, position_ids: Tensor | None = None,
        layer_idx: int | None = None,
    ) -> dict[str, Any]:
        """Mamba-2 has no positions; a padded multi-token step is refused (padding would decay the
        SSM state of a row that continues from a cache), so the engine prefills rows apart."""
        if hidden.shape[1] > 1 and not bool(attention_mask.all()):
            raise ValueError("Mamba-2 steps take no padding: prefill rows one at a time")
        mask = create_recurrent_attention_mask(
            config=self.config, inputs_embeds=hidden, attention_mask=attention_mask, cache=cache
        )
        return {"attention_mask": mask}

    def layer(self, index: int, hidden: Tensor, cache: Cache, inputs: dict[str, Any]) -> Tensor:
        return self.layers[index](hidden, cache=cache, **inputs)

    def final_hidden(self, hidden: Tensor) -> Tensor:
        return self.inner.norm_f(hidden)

    def logits(self, normed: Tensor) -> Tensor:
        head = self.model.lm_head
        return head(normed[:, -1, :].to(head.weight.dtype)).float()

    def fill_layer(self, policy: str, index: int, hidden: Tensor, cache: Cache, inputs: dict[str, Any]) -> None:
        if policy == "partial":
            self.partial_step(index, hidden, cache)
        elif policy != "skip":  # skip: conv and SSM states of skipped layers stay as they were
            self.check_policy(policy)

    def static_cache(self, cache: Cache, layers: int, capacity: int, mask: Tensor, starts: list[int],
                     holes: list[bool]) -> RecurrentStates:
        return RecurrentStates.from_cache(cache, layers).clone()

    def decode_inputs(self, hidden: Tensor, cache: RecurrentStates, positions: Tensor) -> dict[str, Any]:
        return {}  # no positions; a one-token step reads no mask

    def skips_work(self, policy: str) -> bool:
        self.check_policy(policy)
        return policy == "skip"  # partial steps the skipped layers' mixers on the exited state: all the block's work

    def fill_exited(self, policy: str, cache: RecurrentStates, groups: list[tuple[int, Tensor]], hidden: Tensor,
                    inputs: dict[str, Any]) -> None:
        self.check_policy(policy)  # skip: the skipped layers' states stay as they were

    def partial_step(self, index: int, hidden: Tensor, cache: Cache) -> Tensor:
        """Run layer `index`'s mixer on `hidden` to advance its conv and SSM states. The engine
        discards the output; it is returned for the FLOPs count of this work."""
        block = self.layers[index]
        return block.mixer(block.norm(hidden.to(block.norm.weight.dtype)), cache=cache)


def _select(value: Any, rows: Tensor) -> Any:
    """Rows of a per-row input: a tensor (B, ...), a tuple of them, or None."""
    if value is None:
        return None
    if isinstance(value, tuple):
        return tuple(_select(v, rows) for v in value)
    return value.index_select(0, rows)


def layer_stack(model: PreTrainedModel) -> LayerStack:
    """The stack for a model, or an error listing the supported architectures."""
    model_type = model.config.model_type
    if model_type in TRANSFORMER_TYPES:
        return TransformerStack(model)
    if model_type in MAMBA2_TYPES:
        return Mamba2Stack(model)
    raise ValueError(
        f"model type {model_type!r} is not supported by the early-exit engine; "
        f"supported: {list(TRANSFORMER_TYPES + MAMBA2_TYPES)}"
    )
