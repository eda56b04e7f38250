"""Trained exit classifiers: the kinds calm, ffn and mamba.

A classifier maps the residual stream after `layer` layers, (B, T, d), to two logits
(continue, exit); confidence = softmax(logits)[exit]. Every kind first standardises its input
with per-feature statistics of the training split (buffers, set by `distill`), because the raw
residual stream of a pretrained LM has a few features thousands of times larger than the rest.

Adding a kind is one class: subclass `ExitClassifier`, declare its options with defaults in
`options`, and name it in the registry (dynamax_bench/classifiers/registry.py) or in a plug-in's
entry point. A stateful kind sets `stateful = True`; its state is a `RowState` (named tensors,
one row per sequence, see dynamax_bench/engine/rowstate.py), empty before the first position,
which `forward` continues and updates when one is passed, so the engine can select, stack and
copy rows of it. Its step-by-step outputs must equal its full-sequence outputs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dynamax_bench.engine.rowstate import RowState
from dynamax_bench.engine.static import RecurrentStates


class ExitClassifier(nn.Module):
    """Base class: input standardisation, then the kind's own layers to 2 logits."""

    kind: ClassVar[str] = ""  # the registry's name for the class
    stateful: ClassVar[bool] = False
    options: ClassVar[dict[str, Any]] = {}  # the kind's hyper-parameters and their defaults

    def __init__(self, hidden_size: int, **options: Any) -> None:
        super().__init__()
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(f"classifier kind {self.kind!r} has no options {unknown}; its options: {self.options}")
        self.hidden_size = hidden_size
        self.hparams = {**self.options, **options}
        self.register_buffer("mean", torch.zeros(hidden_size))
        self.register_buffer("scale", torch.ones(hidden_size))

    def standardise(self, hidden: Tensor) -> Tensor:
        return (hidden.to(self.mean.dtype) - self.mean) * self.scale

    def new_state(self) -> RowState | None:
        """The state a stateful kind carries across tokens before the first one (None: stateless)."""
        return None

    def forward(self, hidden: Tensor, state: RowState | None = None) -> Tensor:
        """Logits (B, T, 2) for hidden states (B, T, d); a stateful kind continues `state` (B rows) in place."""
        return self.head(self.standardise(hidden))

    def head(self, features: Tensor) -> Tensor:
        raise NotImplementedError


class CalmClassifier(ExitClassifier):
    """CALM-style: one linear layer to 2 logits."""

    def __init__(self, hidden_size: int, **options: Any) -> None:
        super().__init__(hidden_size, **options)
        self.linear = nn.Linear(hidden_size, 2)

    def head(self, features: Tensor) -> Tensor:
        return self.linear(features)


class FfnClassifier(ExitClassifier):
    """A transformer feed-forward block: norm, `expansion` x up-projection, activation, projection to 2."""

    options = {"expansion": 4, "activation": "gelu"}

    def __init__(self, hidden_size: int, **options: Any) -> None:
        super().__init__(hidden_size, **options)
        inner = self.hparams["expansion"] * hidden_size
        self.norm = nn.LayerNorm(hidden_size)
        self.up = nn.Linear(hidden_size, inner)
        self.act = {"gelu": nn.GELU(), "relu": nn.ReLU(), "silu": nn.SiLU()}[self.hparams["activation"]]
        self.down = nn.Linear(inner, 2)

    def head(self, features: Tensor) -> Tensor:
        return self.down(self.act(self.up(self.norm(features))))


class MambaClassifier(ExitClassifier):
    """A Mamba-2 block of transformers (RMSNorm + Mamba2Mixer) whose output projection emits 2 values.

    Stateful: its state is the mixer's conv and SSM state (a one-layer cache). Generation feeds
    it the prompt at once, then one position per token, which equals running it over the whole
    sequence (the library's recurrent step and chunked scan compute the same recurrence).
    """

    stateful = True
    options = {"expand": 2, "head_dim": 64, "state_size": 16, "n_groups": 1, "conv_kernel": 4, "chunk_size": 256}

    def __init__(self, hidden_size: int, **options: Any) -> None:
        super().__init__(hidden_size, **options)
        from transformers import Mamba2Config
        from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer, Mamba2RMSNorm

        opts = self.hparams
        inner = opts["expand"] * hidden_size
        if inner % opts["head_dim"]:
            raise ValueError(
                f"mamba classifier: expand * hidden_size = {inner} is not a multiple of head_dim {opts['head_dim']}; "
                "pick a head_dim that divides it (classifiers.options.mamba.head_dim)"
            )
        self.config = Mamba2Config(
            vocab_size=1,
            pad_token_id=None,
            bos_token_id=None,
            eos_token_id=None,
            hidden_size=hidden_size,
            num_hidden_layers=1,
            num_heads=inner // opts["head_dim"],
            head_dim=opts["head_dim"],
            expand=opts["expand"],
            state_size=opts["state_size"],
            n_groups=opts["n_groups"],
            conv_kernel=opts["conv_kernel"],
            chunk_size=opts["chunk_size"],
        )
        self.norm = Mamba2RMSNorm(hidden_size, eps=self.config.layer_norm_epsilon)
        self.mixer = Mamba2Mixer(self.config, layer_idx=0)
        self.mixer.out_proj = nn.Linear(inner, 2)

    def new_state(self) -> RowState:
        return {}

    def forward(self, hidden: Tensor, state: RowState | None = None) -> Tensor:
        """With a state: continue its 'conv' (B, conv_dim, kernel) and 'ssm' (B, heads, head_dim,
        state_size) entries, which the mixer's own chunked scan (several positions) or recurrent step
        (one) reads and steps in place through a `RecurrentStates` over them (no copy)."""
        features = self.norm(self.standardise(hidden))
        if state is None:
            return self.mixer(features)
        if not state and features.shape[1] == 1:
            state.update(self.zero_state(features))
        cache = RecurrentStates([state.get("conv")], [state.get("ssm")])
        logits = self.mixer(features, cache=cache)
        state["conv"], state["ssm"] = cache.conv[0], cache.ssm[0]
        return logits

    def zero_state(self, features: Tensor) -> RowState:
        """The state before any position, for rows (B, 1, d) that start from nothing (a `_fresh` rule's first
        token): the mixer then takes its recurrent step, which gives the same logits as its chunked scan
        without a state (tests/test_classifiers.py), instead of that scan padding one position to
        `chunk_size` (256) per row. The SSM state is float32, as the scan leaves it at any dtype."""
        mixer, rows = self.mixer, features.shape[0]
        return {"conv": features.new_zeros(rows, mixer.conv_dim, mixer.conv_kernel_size),
                "ssm": features.new_zeros(rows, mixer.num_heads, mixer.head_dim, mixer.ssm_state_size,
                                          dtype=torch.float32)}
