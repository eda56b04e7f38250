"""A loaded backbone decoding under one decode spec: what the `generate` rule, the `latency` rule
and the lm-eval model share, so the three run the same strategy the same way."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from dynamax_bench.backbones.kernels import check_mamba2_kernels
from dynamax_bench.backbones.prepare import Backbone, load_backbone
from dynamax_bench.config import exit_positions
from dynamax_bench.engine import EarlyExitGenerator, Generation, Strategy
from dynamax_bench.generation.strategy import build_strategy
from dynamax_bench.spec import DecodeSpec

log = logging.getLogger(__name__)


@dataclass
class Decoder:
    """The backbone, the strategy of the spec's method, and the resolved exit positions."""

    spec: DecodeSpec
    backbone: Backbone
    strategy: Strategy
    exit_layers: list[int]
    _generators: dict[tuple[tuple[str, ...], int], EarlyExitGenerator] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, spec: DecodeSpec, backbone_dir: str | Path, classifiers: str | Path | None = None) -> Decoder:
        """Load the prepared backbone on the spec's device and dtype, then build the decoder; a Mamba-2
        mixer (backbone or `mamba` classifier) must run the fused kernels where the spec requires them."""
        backbone = load_backbone(backbone_dir, spec.device, spec.dtype)
        decoder = cls.for_backbone(spec, backbone, classifiers)
        rule_modules = getattr(decoder.strategy.rule, "classifiers", {}).values()
        check_mamba2_kernels(spec.mamba_kernels, backbone.model.device, [backbone.model, *rule_modules])
        return decoder

    @classmethod
    def for_backbone(cls, spec: DecodeSpec, backbone: Backbone, classifiers: str | Path | None = None) -> Decoder:
        exit_layers = exit_positions({"exits": spec.exits}, backbone.num_layers)
        strategy = build_strategy(spec.method, backbone, classifiers)
        trained = getattr(strategy.rule, "classifiers", None)
        if trained is not None and sorted(trained) != exit_layers:
            raise ValueError(
                f"{classifiers}: classifiers sit at layers {sorted(trained)} but the exits are {exit_layers}; "
                "retrain them for these exits (the distill rule reruns when a profile's exits change)"
            )
        return cls(spec=spec, backbone=backbone, strategy=strategy, exit_layers=exit_layers)

    def generator(self, stop_strings: Sequence[str], max_new_tokens: int) -> EarlyExitGenerator:
        """One engine per (stop strings, length) pair: the samples of a task share it."""
        key = (tuple(stop_strings), max_new_tokens)
        if key not in self._generators:
            self._generators[key] = EarlyExitGenerator(
                self.backbone.model,
                self.backbone.tokenizer,
                exit_layers=self.exit_layers,
                max_new_tokens=max_new_tokens,
                repetition_penalty=self.spec.repetition_penalty,
                stop_strings=stop_strings,
            )
        return self._generators[key]

    def generate(self, prompts: Sequence[str], stop_strings: Sequence[str], max_new_tokens: int | None = None,
                 disable_tqdm: bool = False) -> list[Generation]:
        """Greedy decoding of every prompt under the spec's strategy, with its per-token trace."""
        generator = self.generator(stop_strings, max_new_tokens or self.spec.max_new_tokens)
        return [generator.generate(prompt, self.strategy)
                for prompt in tqdm(prompts, disable=disable_tqdm, desc=f"decode {self.spec.method.name}", unit="sample")]
