"""Row operations on transformers caches: stack the rows of prompt passes built apart.

K/V layers (`DynamicLayer`, `DynamicSlidingWindowLayer`) hold (B, kv_heads, T, head_dim); the
batch is left-padded, so stacking right-aligns every row's positions. Linear-attention layers
(Mamba-2) hold a conv state (B, conv_dim, kernel) and an SSM state (B, heads, head_dim, state)
of fixed size, which stack without padding. The fields set are those a forward would have written.
The batched engine copies the stacked cache into its static decode cache (engine/static.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers.cache_utils import Cache, DynamicCache, LinearAttentionCacheLayerMixin


def put_recurrent(layer: LinearAttentionCacheLayerMixin, conv: Tensor, ssm: Tensor) -> None:
    """Load conv and SSM states into a linear-attention cache layer as a forward that wrote them
    leaves it (the next forward continues from them)."""
    layer.conv_states[0], layer.recurrent_states[0] = conv, ssm
    layer.conv_kernel_size[0] = conv.shape[-1]
    layer.is_conv_states_initialized[0] = layer.is_recurrent_states_initialized[0] = True
    layer.has_previous_state[0] = True
    layer.device, layer.dtype = conv.device, conv.dtype


def stack_rows(caches: list[Cache], config) -> Cache:
    """One batch cache from caches of one row each; K/V rows left-padded with zeros to the longest.

    Layers no row has run (pruned ones) stay uninitialised."""
    batch = DynamicCache(config=config)
    for index, layer in enumerate(batch.layers):
        sources = [cache.layers[index] for cache in caches]
        if isinstance(layer, LinearAttentionCacheLayerMixin):
            if sources[0].has_previous_state[0]:
                put_recurrent(layer, torch.cat([s.conv_states[0] for s in sources]),
                              torch.cat([s.recurrent_states[0] for s in sources]))
            continue
        initialised = [s for s in sources if s.is_initialized]
        if not initialised:
            continue
        width = max(s.get_seq_length() for s in initialised)
        template = initialised[0].keys[:, :, :0]
        keys = torch.cat([_pad_left(s.keys if s.is_initialized else template, width) for s in sources])
        values = torch.cat([_pad_left(s.values if s.is_initialized else template, width) for s in sources])
        layer.lazy_initialization(keys, values)
        layer.keys, layer.values = keys, values
        if hasattr(layer, "cumulative_length"):
            layer.cumulative_length = width
    return batch


def _pad_left(kv: Tensor, width: int) -> Tensor:
    """(1, heads, T, dim) -> (1, heads, width, dim), zeros before."""
    return F.pad(kv, (0, 0, width - kv.shape[2], 0))
