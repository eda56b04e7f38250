"""Early-exit classifiers: the kinds (calm, ffn, mamba), their registry, and their checkpoints.

A classifier maps the residual stream after `layer` layers, (B, T, d), to two logits
(continue, exit); confidence = softmax(logits)[exit]. Every kind first standardises its input
with per-feature statistics of the training split (buffers, set by `distill`), because the raw
residual stream of a pretrained LM has a few features thousands of times larger than the rest.

Adding a kind is one class and one name: subclass `ExitClassifier`, decorate it with
`@register("name")`, declare its options with defaults in `options`. A stateful kind sets
`stateful = True`, returns its state object from `new_state()` and updates it in `forward`
when one is passed; its step-by-step outputs must equal its full-sequence outputs.

Checkpoint: `<kind>.safetensors` (tensors `exit<i>.<param>`, one classifier per exit position)
beside `<kind>.json` (kind, options, exit layers, hidden size, training hyper-parameters and
held-out metrics).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from dynamax_bench.files import atomic_path, read_json, write_json

CLASSIFIERS: dict[str, type[ExitClassifier]] = {}


def register(name: str):
    """Class decorator: make a classifier kind available under `name` (methods `ee-<name>-...`)."""

    def add(cls: type[ExitClassifier]) -> type[ExitClassifier]:
        if name in CLASSIFIERS:
            raise ValueError(f"classifier kind {name!r} is registered twice")
        cls.kind = name
        CLASSIFIERS[name] = cls
        return cls

    return add


def known_kinds() -> list[str]:
    return sorted(CLASSIFIERS)


def classifier_class(kind: str) -> type[ExitClassifier]:
    """The class of a kind, or an error listing the known kinds."""
    try:
        return CLASSIFIERS[kind]
    except KeyError:
        raise ValueError(f"unknown classifier kind {kind!r}; known kinds: {known_kinds()}") from None


class ExitClassifier(nn.Module):
    """Base class: input standardisation, then the kind's own layers to 2 logits."""

    kind: ClassVar[str]
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

    def new_state(self) -> Any:
        """The per-sequence state a stateful kind carries across tokens (None: stateless)."""
        return None

    def forward(self, hidden: Tensor, state: Any = None) -> Tensor:
        """Logits (B, T, 2) for hidden states (B, T, d); a stateful kind continues `state` in place."""
        return self.head(self.standardise(hidden))

    def head(self, features: Tensor) -> Tensor:
        raise NotImplementedError


@register("calm")
class CalmClassifier(ExitClassifier):
    """CALM-style: one linear layer to 2 logits."""

    def __init__(self, hidden_size: int, **options: Any) -> None:
        super().__init__(hidden_size, **options)
        self.linear = nn.Linear(hidden_size, 2)

    def head(self, features: Tensor) -> Tensor:
        return self.linear(features)


@register("ffn")
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


@register("mamba")
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

    def new_state(self) -> Any:
        from transformers.cache_utils import DynamicCache

        return DynamicCache(config=self.config)

    def forward(self, hidden: Tensor, state: Any = None) -> Tensor:
        return self.mixer(self.norm(self.standardise(hidden)), cache_params=state)


def build_classifier(kind: str, hidden_size: int, options: dict[str, Any] | None = None) -> ExitClassifier:
    return classifier_class(kind)(hidden_size, **(options or {}))


def checkpoint_paths(path: str | Path, kind: str | None = None) -> tuple[Path, Path]:
    """(weights, metadata) of a checkpoint given its .safetensors file, or its folder and kind."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".safetensors":
        if kind is None:
            raise ValueError(f"{path}: give the classifier's .safetensors file, or its folder and the kind")
        path = path / f"{kind}.safetensors"
    return path, path.with_suffix(".json")


def save_classifiers(path: str | Path, classifiers: list[ExitClassifier], exit_layers: list[int], info: dict) -> None:
    """One classifier per exit, in exit order, as safetensors + JSON (kind, options, layers, `info`)."""
    weights, meta = checkpoint_paths(path)
    first = classifiers[0]
    tensors = {
        f"exit{i}.{name}": tensor.detach().float().contiguous().cpu()
        for i, clf in enumerate(classifiers)
        for name, tensor in clf.state_dict().items()
    }
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp), metadata={"kind": first.kind})
    write_json(meta, {"kind": first.kind, "options": first.hparams, "hidden_size": first.hidden_size,
                      "exit_layers": list(exit_layers), **info})


def load_classifiers(path: str | Path, kind: str | None = None,
                     device: str | torch.device = "cpu") -> tuple[dict[int, ExitClassifier], dict]:
    """{exit layer: classifier in eval mode} and the checkpoint's metadata."""
    weights, meta_path = checkpoint_paths(path, kind)
    if not weights.exists() or not meta_path.exists():
        raise FileNotFoundError(
            f"no trained classifiers at {weights} (+ .json); train them with the distill rule, e.g. "
            f"`snakemake --cores 1 {weights}`"
        )
    meta = read_json(meta_path)
    if kind is not None and meta["kind"] != kind:
        raise ValueError(f"{weights} holds {meta['kind']!r} classifiers, not {kind!r}")
    tensors = load_file(str(weights))
    classifiers = {}
    for i, layer in enumerate(meta["exit_layers"]):
        clf = build_classifier(meta["kind"], meta["hidden_size"], meta["options"])
        prefix = f"exit{i}."
        clf.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
        classifiers[layer] = clf.to(device).eval()
    return classifiers, meta
