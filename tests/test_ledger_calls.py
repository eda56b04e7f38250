"""The ledger counts the calls the engine really makes.

Forward hooks count module invocations during real generations on the smoke models (decoder
layers by input length and position, the LM head by positions read, exit classifiers, the
partial-forward fills), for every method kind; the ledger's `sample_work` for the same prompt length
and exit trace (a spec-* method: its rounds) must name the same blocks the same number of times. The decisions are scripted (a seeded stream of
confidences, after the method's own work at the exit has run) so that the traces mix exits at
every position with tokens that run every layer; everything else is the engine's own path.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.classifiers.checkpoints import save_classifiers
from dynamax_bench.classifiers.registry import build_classifier, is_trained
from dynamax_bench.config import exit_positions
from dynamax_bench.costs.ledger import FULL, sample_work
from dynamax_bench.engine import EarlyExitGenerator, ExitRule, Strategy
from dynamax_bench.engine.policies import POLICIES
from dynamax_bench.engine.speculative import SpeculativeGenerator, Speculation
from dynamax_bench.engine.stacks import TransformerStack, layer_stack
from dynamax_bench.generation.strategy import build_strategy
from dynamax_bench.generation.tasks import get_task
from dynamax_bench.spec import parse_method

NEW_TOKENS = 12
OPTIONS = {"mamba": {"head_dim": 16, "chunk_size": 64}}  # the smoke profile's


class Calls:
    """Module invocations during generation, named as the ledger names its blocks."""

    def __init__(self, stack, rule: ExitRule | None) -> None:
        self.seen: Counter = Counter()
        self.handles = []
        transformer = isinstance(stack, TransformerStack)
        for layer in stack.layers:
            self._hook(layer, self._layer, with_kwargs=True)
            # a fill reaches into a skipped layer without calling it: K/V projections, or the mixer
            self._hook(layer.self_attn.k_proj if transformer else layer.mixer, lambda *_: self.seen.update(["inner"]))
        self._hook(stack.model.lm_head, self._head)
        for clf in getattr(rule, "classifiers", {}).values():
            self._hook(clf, self._classifier)

    def _hook(self, module, fn, with_kwargs: bool = False) -> None:
        self.handles.append(module.register_forward_pre_hook(fn, with_kwargs=with_kwargs))

    def _head(self, module, args) -> None:
        """Positions read: one per call, m where self-speculative verification reads m at once."""
        self.seen["lm_head"] += args[0].numel() // args[0].shape[-1]

    def _layer(self, module, args, kwargs) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        self.seen.update(["layer"])
        positions = kwargs.get("position_ids")  # Transformer: the step's positions
        if hidden.shape[1] > 1 and positions is not None and int(positions[0, 0]) > 0:  # new positions after a cache
            self.seen[("layer_verify", (int(positions[0, 0]), hidden.shape[1]))] += 1
        elif hidden.shape[1] > 1:
            self.seen[("layer_prefill", hidden.shape[1])] += 1
        else:  # Transformer: the step's context length
            self.seen[("layer_decode", None if positions is None else int(positions[0, -1]))] += 1

    def _classifier(self, module, args) -> None:
        length = args[0].shape[1]
        self.seen["classifier_step" if length == 1 else ("classifier_prefill", length)] += 1

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def scripted(rule: ExitRule, seed: int) -> ExitRule:
    """The rule's own work at every exit, then a confidence from a seeded stream (threshold 0.7)."""
    stream, own = random.Random(seed), rule.confidence

    def confidence(point, hidden, state) -> float:  # the reference path: one row
        own(point, hidden, state)
        return stream.random()

    rule.confidence, rule.threshold = confidence, 0.7
    return rule


def strategy_for(name: str, backbone: Backbone, exits: list[int], folder: Path) -> Strategy:
    """The strategy the generate rule builds (trained kinds from a checkpoint of seeded random
    classifiers), its decisions scripted."""
    method, checkpoint = parse_method(name), None
    if method.kind == "ee" and is_trained(method.exit_kind):
        torch.manual_seed(0)
        checkpoint = folder / f"{method.exit_kind}.safetensors"
        hidden = backbone.model.config.hidden_size
        save_classifiers(checkpoint, [build_classifier(method.exit_kind, hidden, OPTIONS.get(method.exit_kind))
                                      for _ in exits], exits, {})
    strategy = build_strategy(method, backbone, checkpoint)
    if strategy.rule is not None:
        scripted(strategy.rule, seed=len(name))
    return strategy


def methods(family: str) -> list[str]:
    first, *_ = POLICIES[family]
    early = [f"ee-{kind}-{policy}-t0.7" for kind in ("calm", "mamba") for policy in POLICIES[family]]
    return ["full", "prune4", "oracle", *early, f"ee-maxsoftmax-{first}-t0.7", "spec-e3-k3"]


CASES = [(backbone, name) for backbone, family in (("tiny_mistral", "transformer"), ("tiny_mamba2", "mamba2"))
         for name in methods(family)]


@pytest.mark.parametrize(("backbone_name", "name"), CASES)
def test_ledger_counts_equal_the_engines_module_calls(request: pytest.FixtureRequest, backbone_name: str,
                                                      name: str, tmp_path: Path) -> None:
    backbone: Backbone = request.getfixturevalue(backbone_name)
    stack = layer_stack(backbone.model)
    exits = exit_positions({"exits": {"count": 4}}, backbone.num_layers)
    method = parse_method(name)
    task = get_task("triviaqa")
    (sample,) = task.load({"kind": "embedded"}, limit=1, num_fewshot=2)
    prompt = backbone.tokenizer(sample.prompt).input_ids  # the engine takes token ids
    strategy = strategy_for(name, backbone, exits, tmp_path)
    generator = EarlyExitGenerator(backbone.model, backbone.tokenizer, exit_layers=exits, max_new_tokens=NEW_TOKENS,
                                   eos_token_ids=[])
    if method.kind == "spec":  # its natural drafts: tiny Mistral's mostly accepted, tiny Mamba-2's mostly rejected
        generator = SpeculativeGenerator(backbone.model, backbone.tokenizer, max_new_tokens=NEW_TOKENS, eos_token_ids=[],
                                         speculation=Speculation(method.draft_layer, method.draft_tokens))
    calls = Calls(stack, strategy.rule)
    try:
        out = generator.speculate(prompt) if method.kind == "spec" else generator.generate(prompt, strategy)
    finally:
        calls.remove()
    seen, trace = calls.seen, out.exit_layers
    assert len(trace) == NEW_TOKENS
    if method.kind == "ee":  # the scripted decisions mix early exits with tokens that ran every layer
        assert min(trace[1:]) < backbone.num_layers and backbone.num_layers in trace[1:], trace
    rounds = {"drafted": out.drafted, "accepted": out.accepted} if method.kind == "spec" else None
    if rounds:
        assert sum(out.drafted) > 0, rounds

    # the oracle runs every layer and probes every exit; the ledger charges its trace as the ceiling,
    # so the engine's calls are checked against the full model's work for the same tokens
    table = {"num_layers": backbone.num_layers, "exit_positions": exits, "family": backbone.family}
    work = sample_work(len(prompt), trace, FULL if method.kind == "oracle" else method, table, rounds)
    expected = work.prompt + work.decode
    totals = work.totals()

    layers = Counter({key: n for key, n in seen.items() if isinstance(key, tuple) and key[0].startswith("layer_")})
    ledger_layers = Counter()
    for (block, length), n in expected.items():
        if block.startswith("layer_"):
            positional = block != "layer_decode" or isinstance(stack, TransformerStack)
            ledger_layers[(block, length if positional else None)] += n
    assert layers == ledger_layers

    assert seen["inner"] - seen["layer"] == (totals["fill"] if method.policy == "partial" else 0)
    prefill = Counter({key: n for key, n in seen.items() if isinstance(key, tuple) and key[0] == "classifier_prefill"})
    assert prefill == Counter({key: n for key, n in expected.items() if key[0] == "classifier_prefill"})
    if method.exit_kind in ("calm", "mamba"):
        assert seen["classifier_step"] == totals["decision"]
    if method.exit_kind == "maxsoftmax":  # its decision reads the LM head at the exit
        assert seen["lm_head"] == totals["head"] + totals["decision"]
    elif method.kind != "oracle":
        assert seen["lm_head"] == totals["head"]
