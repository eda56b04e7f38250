"""A loaded backbone decoding under one decode spec: what the `generate` rule, the `latency` rule
and the lm-eval model share, so the three run the same strategy the same way.

At batch size 1 without the prefix cache the spec decodes on the engine's reference path, one
prompt at a time. Otherwise the batched engine decodes, then every row that met a near tie is
re-decoded on the reference path (`engine.verify`): a row the batch shape changed takes its
reference output, so the generations are the batch-1 ones whatever the batch size, and the
`Agreement` record says how many rows and tokens the batch had changed and at which near ties. A
difference at no near tie is a bug of the batched engine and stops the run. `decode_each` decodes
the decoders of one generate job (its thresholds) in one batched call, so they share start-up and
each batch's prompt pass, and checks them row by row, so a row re-decoded under several of them
runs its batch-1 prompt pass once (`engine.verify_each`).

A `spec-*` method (self-speculative decoding, engine/speculative.py) decodes at batch 1 whatever
the profile batches: its rows would accept drafts of different lengths, which the batched engine's
caches cannot hold. Its verification reads several positions at once, so a decision at a near tie
could differ from the full model's plain decode: those rows are re-decoded by the full model at
batch 1 (`engine.verify` with `Strategy.full()`), and one that differs takes that output (its rounds
then draft nothing), counted in the agreement record as for the batched engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from dynamax_bench.backbones.kernels import check_mamba2_kernels
from dynamax_bench.backbones.prepare import Backbone, load_backbone
from dynamax_bench.config import exit_positions
from dynamax_bench.engine import Agreement, BatchedGenerator, EarlyExitGenerator, Generation, Strategy, verify, verify_each
from dynamax_bench.engine.neartie import Bounds
from dynamax_bench.engine.promptstore import PromptStore
from dynamax_bench.engine.speculative import SpeculativeGeneration, SpeculativeGenerator, Speculation, full_decode_rounds
from dynamax_bench.generation.strategy import build_strategy, speculation_of
from dynamax_bench.spec import DecodeSpec

log = logging.getLogger(__name__)


@dataclass
class Decoder:
    """The backbone, the strategy of the spec's method, and the resolved exit positions; a `spec-*`
    method's speculation (its strategy is then the full model's, the output it reproduces)."""

    spec: DecodeSpec
    backbone: Backbone
    strategy: Strategy
    exit_positions: list[int]
    speculation: Speculation | None = None
    _generators: dict[tuple, EarlyExitGenerator | BatchedGenerator] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, spec: DecodeSpec, backbone_dir: str | Path, classifiers: str | Path | None = None) -> Decoder:
        """Load the prepared backbone on the spec's device and dtype, then build the decoder; a Mamba-2
        mixer (backbone or `mamba` classifier) must run the fused kernels where the spec requires them."""
        return cls.load_all([spec], backbone_dir, classifiers)[0]

    @classmethod
    def load_all(cls, specs: Sequence[DecodeSpec], backbone_dir: str | Path,
                 classifiers: str | Path | None = None) -> list[Decoder]:
        """Decoders of several specs on one backbone (a generate job's thresholds): the backbone and
        the classifiers load once, so the rules of one classifier set share its state over the prompt."""
        settings = {(spec.device, spec.dtype, spec.mamba_kernels) for spec in specs}
        if len(settings) != 1:
            raise ValueError(f"decoders that share a backbone need one device, dtype and kernel setting, got {settings}")
        backbone = load_backbone(backbone_dir, specs[0].device, specs[0].dtype)
        loaded: dict = {}
        decoders = [cls.for_backbone(spec, backbone, classifiers, loaded) for spec in specs]
        rule_modules = {id(m): m for d in decoders for m in getattr(d.strategy.rule, "classifiers", {}).values()}
        check_mamba2_kernels(specs[0].mamba_kernels, backbone.model.device, [backbone.model, *rule_modules.values()])
        return decoders

    @classmethod
    def for_backbone(cls, spec: DecodeSpec, backbone: Backbone, classifiers: str | Path | None = None,
                     loaded: dict | None = None) -> Decoder:
        """`loaded`: classifiers already read, by checkpoint (`build_strategy`)."""
        positions = exit_positions({"exits": spec.exits}, backbone.num_layers)
        strategy = build_strategy(spec.method, backbone, classifiers, loaded)
        trained = getattr(strategy.rule, "classifiers", None)
        if trained is not None and sorted(trained) != positions:
            raise ValueError(
                f"{classifiers}: classifiers sit at layers {sorted(trained)} but the exits are {positions}; "
                "retrain them for these exits (the distill rule reruns when a profile's exits change)"
            )
        return cls(spec=spec, backbone=backbone, strategy=strategy, exit_positions=positions,
                   speculation=speculation_of(spec.method))

    def _engine(self, cls: type[EarlyExitGenerator] | type[BatchedGenerator], stop_strings: Sequence[str],
                max_new_tokens: int, **options) -> EarlyExitGenerator | BatchedGenerator:
        """One engine per (path, stop strings, length, options): the samples of a task share it."""
        key = (cls.__name__, tuple(stop_strings), max_new_tokens, tuple(sorted(options.items())))
        if key not in self._generators:
            layers = {} if cls is SpeculativeGenerator else {"exit_layers": self.exit_positions}
            self._generators[key] = cls(
                self.backbone.model,
                self.backbone.tokenizer,
                max_new_tokens=max_new_tokens,
                repetition_penalty=self.spec.repetition_penalty,
                stop_strings=stop_strings,
                **layers,
                **options,
            )
        return self._generators[key]

    def generator(self, stop_strings: Sequence[str], max_new_tokens: int) -> EarlyExitGenerator:
        """The reference path (batch 1, no prefix cache)."""
        return self._engine(EarlyExitGenerator, stop_strings, max_new_tokens)

    def speculative_generator(self, stop_strings: Sequence[str], max_new_tokens: int) -> SpeculativeGenerator:
        """A `spec-*` method's engine (its inherited `generate` is the full model's reference path)."""
        if self.speculation is None:
            raise ValueError(f"{self.spec.method.name} is not a spec-* method")
        return self._engine(SpeculativeGenerator, stop_strings, max_new_tokens, speculation=self.speculation)

    def batch1(self, stop_strings: Sequence[str], max_new_tokens: int) -> Callable[..., Generation]:
        """Decode one prompt at batch 1 as this method does: `run(prompt, on_first_token=None)` (the
        latency rule times it)."""
        if self.speculation is not None:
            return self.speculative_generator(stop_strings, max_new_tokens).speculate
        engine, strategy = self.generator(stop_strings, max_new_tokens), self.strategy
        return lambda prompt, on_first_token=None: engine.generate(prompt, strategy, on_first_token=on_first_token)

    def batched_generator(self, stop_strings: Sequence[str], max_new_tokens: int, batch_size: int | None = None,
                          share_prefixes: bool | None = None) -> BatchedGenerator:
        """The batched engine at the spec's batch size and prefix cache setting (or these)."""
        share = self.spec.prefix_cache if share_prefixes is None else share_prefixes
        return self._engine(BatchedGenerator, stop_strings, max_new_tokens,
                            batch_size=batch_size or self.spec.batch_size, share_prefixes=share)

    @property
    def batched(self) -> bool:
        """Whether the batched engine decodes: never for a spec-* method, which decodes at batch 1."""
        return self.speculation is None and (self.spec.batch_size > 1 or self.spec.prefix_cache)

    def decode(self, prompts: Sequence[str], stop_strings: Sequence[str], max_new_tokens: int | None = None,
               disable_tqdm: bool = False) -> tuple[list[Generation], Agreement | None]:
        """Greedy decoding of every prompt under the spec's strategy, with its per-token trace, and
        the batched run's agreement with batch 1 (None on the reference path)."""
        return decode_each([self], prompts, stop_strings, max_new_tokens, disable_tqdm)[0]

    def generate(self, prompts: Sequence[str], stop_strings: Sequence[str], max_new_tokens: int | None = None,
                 disable_tqdm: bool = False) -> list[Generation]:
        """The generations of `decode`, which are the batch-1 ones at every batch size."""
        return self.decode(prompts, stop_strings, max_new_tokens, disable_tqdm)[0]


def decode_each(decoders: Sequence[Decoder], prompts: Sequence[str], stop_strings: Sequence[str],
                max_new_tokens: int | None = None, disable_tqdm: bool = False,
                store: PromptStore | None = None) -> list[tuple[list[Generation], Agreement | None]]:
    """`Decoder.decode` for several decoders of one backbone and engine settings at once (a generate
    job's thresholds): the batched engine runs them in one call, which prefills each batch once for
    the strategies with the same kept layers; then each is checked against batch 1, row by row, a
    re-decoded row's prompt pass run once for those strategies too (`verify_each`; a `store` keeps those
    passes for later calls on the same prompts)."""
    first = decoders[0]
    engine_settings = {(id(d.backbone), tuple(d.exit_positions), d.spec.batch_size, d.spec.prefix_cache,
                        d.spec.repetition_penalty, d.spec.max_new_tokens) for d in decoders}
    if len(engine_settings) != 1:
        raise ValueError("decode_each needs decoders of one loaded backbone with the same exits, batch size, "
                         f"prefix cache, repetition penalty and length; got {len(engine_settings)} settings")
    length = max_new_tokens or first.spec.max_new_tokens
    labels = [f"decode {d.spec.method.name}" for d in decoders]
    if any(d.speculation is not None for d in decoders):
        if len(decoders) > 1:
            raise ValueError("a spec-* method decodes alone (batch 1): give decode_each one decoder for it")
        return [_speculate(first, prompts, stop_strings, length, labels[0], disable_tqdm)]
    if not first.batched:
        return [([d.generator(stop_strings, length).generate(prompt, d.strategy)
                  for prompt in tqdm(prompts, disable=disable_tqdm, desc=label, unit="sample")], None)
                for d, label in zip(decoders, labels)]
    engine = first.batched_generator(stop_strings, length)
    started = time.perf_counter()
    each = engine.generate_each(prompts, [d.strategy for d in decoders],
                                progress=None if disable_tqdm else " + ".join(labels))
    batched_seconds = time.perf_counter() - started
    # one reference engine serves every decoder: they share the backbone and the engine settings checked above
    agreements = verify_each(first.generator(stop_strings, length), prompts, [d.strategy for d in decoders], each,
                             store=store)
    verify_seconds = time.perf_counter() - started - batched_seconds
    log.info("batched decode %.1f s for the %d strategies of the call; re-decoding their near-tie rows at batch 1 "
             "%.1f s (%d rows, %d tokens)", batched_seconds, len(decoders), verify_seconds,
             sum(a.rows_redecoded for a in agreements), sum(a.tokens_redecoded for a in agreements))
    return [_checked(d, label, generations, agreement, engine.bounds)
            for d, label, generations, agreement in zip(decoders, labels, each, agreements)]


def _speculate(decoder: Decoder, prompts: Sequence[str], stop_strings: Sequence[str], length: int, label: str,
               disable_tqdm: bool) -> tuple[list[SpeculativeGeneration], Agreement]:
    """A spec-* method's generations, each row with a near tie in a verification checked against the full
    model's plain decode at batch 1 (module docstring)."""
    engine = decoder.speculative_generator(stop_strings, length)
    generations = [engine.speculate(prompt) for prompt in tqdm(prompts, disable=disable_tqdm, desc=label, unit="sample")]
    agreement = verify(engine, prompts, Strategy.full(), generations)
    agreement.bounds = engine.bounds
    if agreement.unexplained:
        raise RuntimeError(
            f"{decoder.spec.backbone} {decoder.spec.method.name}: self-speculative decoding differs from the full model "
            f"at no near tie in rows {[d.row for d in agreement.unexplained]} (first tokens "
            f"{[d.token for d in agreement.unexplained]}): a bug of engine/speculative.py"
        )
    for row, reference in agreement.references.items():
        generations[row] = full_decode_rounds(reference)
    accepted, drafted = sum(sum(g.accepted) for g in generations), sum(sum(g.drafted) for g in generations)
    log.info("%s: %d of %d drafts accepted; %d of %d rows met a near tie in a verification, %d differed from the full "
             "model's plain decode and took its output", label, accepted, drafted, agreement.rows_with_near_ties,
             agreement.rows, agreement.rows_differing)
    return generations, agreement


def _checked(decoder: Decoder, label: str, generations: list[Generation], agreement: Agreement,
             bounds: Bounds) -> tuple[list[Generation], Agreement]:
    """A batched run checked against batch 1: the near-tie rows re-decoded on the reference path take
    their reference output; a difference at no near tie stops the run."""
    spec = decoder.spec
    agreement.bounds = bounds
    if agreement.unexplained:
        raise RuntimeError(
            f"{spec.backbone} {spec.method.name}: the batched engine differs from batch 1 at no near tie "
            f"in rows {[d.row for d in agreement.unexplained]} (first tokens "
            f"{[d.token for d in agreement.unexplained]}): a bug of the batched engine; set "
            "generation.batch_size: 1 and generation.prefix_cache: false to decode on the reference path"
        )
    for row, generation in agreement.references.items():
        generations[row] = generation
    log.info("%s: batch %d, prefix cache %s: %d of %d rows met a near tie, %d differed from batch 1 and took "
             "their batch-1 output", label, spec.batch_size, spec.prefix_cache, agreement.rows_with_near_ties,
             agreement.rows, agreement.rows_differing)
    return generations, agreement
