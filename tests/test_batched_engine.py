"""The batched engine reproduces the batch-1 reference path, row for row, for every method.

Every row's tokens and exit trace at batch 1, 3 and 8 (prompts of mixed lengths, shared-prefix
cache on and off, repetition penalty on and off, stop strings that end rows at different steps)
equal that prompt's reference run, except where the row recorded a near tie at the first
differing token; a row with no near tie must be identical.
"""

from __future__ import annotations

import copy
import random
from types import SimpleNamespace

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.classifiers.registry import build_classifier
from dynamax_bench.classifiers.training_free import MaxSoftmaxRule
from dynamax_bench.engine import (
    BatchedGenerator,
    ClassifierRule,
    ConstantRule,
    EarlyExitGenerator,
    Generation,
    NearTie,
    Strategy,
    layer_stack,
    verify,
    verify_each,
)
from dynamax_bench.classifiers.untrained import untrained_rule
from dynamax_bench.engine.batched import BatchedGenerator as Engine
from dynamax_bench.engine.correctness import first_difference, trace
from dynamax_bench.engine.hostreads import HostReads
from dynamax_bench.engine.neartie import Bounds
from dynamax_bench.engine.prefill import Prefiller
from dynamax_bench.engine.prefix import MIN_SHARED_PREFIX, plan_batches, shared_prefix_lengths
from dynamax_bench.engine.promptstore import PromptForward, PromptStore
from dynamax_bench.engine.rowstate import cat_rows, clone_rows, select_rows, write_rows
from dynamax_bench.engine.stopping import StopStrings
from dynamax_bench.generation.tasks import get_task

EXITS = [4, 5, 6, 7]
NEW_TOKENS = 8
STOPS = ("ation", "ed ", "??")
FEWSHOT = (
    "Answer each question.\nQuestion: Who wrote Hamlet?\nAnswer: William Shakespeare\n\n"
    "Question: What is the boiling point of water?\nAnswer: 100 degrees\n\n"
)
PROMPTS = [
    FEWSHOT + "Question: Who painted the Mona Lisa?\nAnswer:",
    "The three primary colours are",
    FEWSHOT + "Question: What is two plus two?\nAnswer:",
    "def fibonacci(n):",
    FEWSHOT + "Question: Who painted the Mona Lisa?\nAnswer: Leonardo\n\nQuestion: When?\nAnswer:",
    "Once",
    "Question: What is the capital city of France??\nAnswer:",
]
CASES = [(3, False), (8, True)]  # (batch size, shared-prefix cache)
KINDS = ("calm", "ffn", "mamba", "maxsoftmax", "saturation")
FAMILY_POLICIES = {"transformer": ("copy", "partial"), "mamba2": ("skip", "partial")}
# Every exit method under one of its family's two policies, alternating, the other policy on the other family.
METHODS = {
    family: ["full", "prune3", "oracle"]
    + [f"ee-{kind}-{(i + first) % 2}" for i, kind in enumerate(KINDS)]
    for family, first in (("tiny_mistral", 0), ("tiny_mamba2", 1))
}
BATCH_ONE = ("full", "ee-mamba-0", "ee-mamba-1")  # a prefix carries the caches and the stateful rule's state


def reference_engine(backbone: Backbone, penalty: float) -> EarlyExitGenerator:
    return EarlyExitGenerator(backbone.model, backbone.tokenizer, exit_layers=EXITS, max_new_tokens=NEW_TOKENS,
                              repetition_penalty=penalty, stop_strings=STOPS)


def batched_engine(backbone: Backbone, penalty: float, batch_size: int, share: bool) -> BatchedGenerator:
    return BatchedGenerator(backbone.model, backbone.tokenizer, exit_layers=EXITS, max_new_tokens=NEW_TOKENS,
                            repetition_penalty=penalty, stop_strings=STOPS, batch_size=batch_size,
                            share_prefixes=share)


class Methods:
    """A backbone's strategies per method and penalty (rules calibrated under that penalty so that
    about half the decisions exit) and their reference generations, built when first asked."""

    def __init__(self, backbone: Backbone) -> None:
        self.backbone = backbone
        self.strategies: dict[tuple[str, float], Strategy] = {}
        self.references: dict[tuple[str, float], list[Generation]] = {}

    def strategy(self, method: str, penalty: float) -> Strategy:
        if (method, penalty) not in self.strategies:
            self.strategies[method, penalty] = self._build(method, penalty)
        return self.strategies[method, penalty]

    def _build(self, method: str, penalty: float) -> Strategy:
        if method == "full":
            return Strategy.full()
        if method == "oracle":
            return Strategy(oracle=True)
        if method.startswith("prune"):
            return Strategy.prune(self.backbone.num_layers, int(method[len("prune"):]))
        _, kind, policy_index = method.split("-")
        rule = untrained_rule(kind, reference_engine(self.backbone, penalty), PROMPTS, exit_share=0.5)
        return Strategy.early_exit(rule, FAMILY_POLICIES[self.backbone.family][int(policy_index)])

    def reference(self, method: str, penalty: float) -> list[Generation]:
        key = (method, penalty)
        if key not in self.references:
            engine = reference_engine(self.backbone, penalty)
            self.references[key] = [engine.generate(p, self.strategy(method, penalty)) for p in PROMPTS]
        return self.references[key]


@pytest.fixture(scope="module")
def methods(tiny_mistral: Backbone, tiny_mamba2: Backbone) -> dict[str, Methods]:
    return {"tiny_mistral": Methods(tiny_mistral), "tiny_mamba2": Methods(tiny_mamba2)}


def assert_rows_agree(outputs: list[Generation], references: list[Generation], what: str) -> int:
    """Every row equals its reference, or differs first at a token where it recorded a near tie.
    Returns the number of differing rows."""
    differing = 0
    for row, (ours, theirs) in enumerate(zip(outputs, references)):
        start = first_difference(trace(ours), trace(theirs))
        if start is None:
            assert ours.stop_reason == theirs.stop_reason and ours.text == theirs.text, f"{what}, row {row}"
            continue
        differing += 1
        assert ours.near_ties, f"{what}, row {row}: differs at token {start} without any near tie"
        assert any(tie.token == start for tie in ours.near_ties), (
            f"{what}, row {row}: differs at token {start}, near ties only at {[t.token for t in ours.near_ties]}")
    return differing


def exits_split_within_a_step(outputs: list[Generation]) -> bool:
    """Some decode step had rows leaving at different layers."""
    steps = max(len(g.exit_layers) for g in outputs)
    return any(len({g.exit_layers[i] for g in outputs if i < len(g.exit_layers)}) > 1 for i in range(1, steps))


@pytest.mark.parametrize(("backbone_name", "method"), [(b, m) for b, names in METHODS.items() for m in names])
def test_batched_rows_equal_batch_one(methods: dict[str, Methods], backbone_name: str, method: str) -> None:
    m = methods[backbone_name]
    penalty = 1.3 if METHODS[backbone_name].index(method) % 2 else 1.0
    strategy = m.strategy(method, penalty)
    near_ties = differing = 0
    split = False
    for batch_size, share in CASES + ([(1, True)] if method in BATCH_ONE else []):
        outputs = batched_engine(m.backbone, penalty, batch_size, share).generate(PROMPTS, strategy)
        what = f"{backbone_name} {method} B={batch_size} prefix={'on' if share else 'off'} penalty={penalty}"
        differing += assert_rows_agree(outputs, m.reference(method, penalty), what)
        near_ties += sum(len(g.near_ties) for g in outputs)
        split = split or exits_split_within_a_step(outputs)
    assert differing <= near_ties  # every difference sits on a counted near tie
    if method.startswith("ee-"):
        assert split, f"{backbone_name} {method}: the calibrated rule never split a step's rows between exits"


def test_the_host_read_counter_sees_what_would_wait_for_a_gpu() -> None:
    x = torch.arange(6.0)
    with HostReads() as reads:
        x.tolist(), int(x[1]), bool((x > 2).any()), x[x > 2], x.nonzero()
        x.sum() + 1, x[torch.tensor([0, 2])], (x > 2).nonzero_static(size=3)  # these stay on the device
    assert reads.calls == {"tolist": 1, "__int__": 1, "__bool__": 1, "__getitem__": 1, "nonzero": 1}


@pytest.mark.parametrize(("backbone_name", "method"), [(b, m) for b, names in METHODS.items() for m in names
                                                       if m != "prune3"])
def test_a_decode_step_reads_the_device_once_plus_once_per_exit(methods: dict[str, Methods], backbone_name: str,
                                                                method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call that would make the host wait for a GPU (engine/hostreads.py), counted while each
    decode step and the read of its tokens run, library code included, is one of the engine's own
    reads (`host_reads`), and a step makes at most one plus one per exit point (the GPU benchmark
    checks the same with torch.cuda.set_sync_debug_mode)."""
    m = methods[backbone_name]
    penalty = 1.3 if METHODS[backbone_name].index(method) % 2 else 1.0  # the strategies the test above built
    strategy = m.strategy(method, penalty)
    engine = batched_engine(m.backbone, penalty, 8, True)
    per_step: list[int] = []  # waits of each decode step and of the read of its tokens
    step, read = Engine._step, Engine._read

    def step_counted(self, *args):
        with HostReads() as reads:
            result = step(self, *args)
        per_step.append(reads.count)
        return result

    def read_counted(self, batch, hidden, decoded, *args):
        with HostReads() as reads:
            result = read(self, batch, hidden, decoded, *args)
        if decoded is not None:  # the first tokens' read belongs to the prompt's forward
            per_step[-1] += reads.count
        return result

    monkeypatch.setattr(Engine, "_step", step_counted)
    monkeypatch.setattr(Engine, "_read", read_counted)
    engine.generate(PROMPTS, strategy)
    assert len(per_step) == engine.steps > 0
    assert sum(per_step) + 1 == engine.host_reads  # every wait is one of the engine's reads (+1: the first tokens')
    assert max(per_step) <= (1 if strategy.rule is None else 1 + len(EXITS)), per_step


@pytest.mark.parametrize("backbone_name", ["tiny_mistral", "tiny_mamba2"])
def test_a_sweep_in_one_call_equals_each_strategy_alone(methods: dict[str, Methods], backbone_name: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`generate_each` (a generate job's threshold sweep) gives every strategy the generations, exit
    traces and near ties of its own `generate` call, while strategies with the same kept layers prefill
    each batch once: full, oracle, every ee rule and both stateful classifier sets (each building its own
    state from that pass) one, prune its own."""
    m = methods[backbone_name]
    policies = FAMILY_POLICIES[m.backbone.family]
    mamba = m.strategy("ee-mamba-0", 1.0).rule
    sweep = [Strategy.early_exit(ClassifierRule(mamba.classifiers, threshold), policy)
             for threshold in (mamba.threshold, 0.5 * mamba.threshold) for policy in policies]
    other = copy.deepcopy(mamba.classifiers)  # a second stateful set (the top-k variant): its own state
    with torch.no_grad():
        for parameter in (p for clf in other.values() for p in clf.parameters()):
            parameter.mul_(1.5)
    second = Strategy.early_exit(ClassifierRule(other, 0.5 * mamba.threshold), policies[0])
    assert second.prompt_pass() != sweep[0].prompt_pass()
    strategies = [m.strategy("full", 1.0), m.strategy("prune3", 1.0), *sweep, m.strategy("oracle", 1.0),
                  second, m.strategy("ee-calm-0", 1.0), m.strategy("ee-maxsoftmax-1", 1.0)]
    engine = batched_engine(m.backbone, 1.0, 3, True)
    alone = [engine.generate(PROMPTS, strategy) for strategy in strategies]
    runs = []
    original = Prefiller.run
    monkeypatch.setattr(Prefiller, "run", lambda self, *args: runs.append(self) or original(self, *args))
    together = engine.generate_each(PROMPTS, strategies)
    batches = len(plan_batches([engine.tokenize(p) for p in PROMPTS], 3, True).batches)
    assert len(runs) == 2 * batches  # every layer (full, oracle, the ee rules), prune3
    for strategy, ours, theirs in zip(strategies, together, alone):
        for row, (a, b) in enumerate(zip(ours, theirs)):
            assert (a.token_ids, a.exit_layers, a.stop_reason, a.near_ties) == (
                b.token_ids, b.exit_layers, b.stop_reason, b.near_ties), f"{backbone_name} {strategy}, row {row}"
    assert len({tuple(tuple(g.exit_layers) for g in out) for out in together[2:6]}) > 1  # the sweep differs
    counterpart = 2 + len(policies)  # the first set at the second set's threshold and policy
    assert [trace(g) for g in together[7]] != [trace(g) for g in together[counterpart]]  # the sets' states differ


@pytest.mark.parametrize("backbone_name", ["tiny_mistral", "tiny_mamba2"])
def test_batched_never_exit_equals_generate(methods: dict[str, Methods], backbone_name: str) -> None:
    """A rule that never fires, under every policy, is model.generate's greedy output per prompt."""
    backbone = methods[backbone_name].backbone
    engine = BatchedGenerator(backbone.model, backbone.tokenizer, exit_layers=EXITS, max_new_tokens=NEW_TOKENS,
                              repetition_penalty=1.3, eos_token_ids=[], batch_size=8)
    expected = []
    for prompt in PROMPTS[:4]:
        ids = backbone.tokenizer(prompt, return_tensors="pt").input_ids
        out = backbone.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                                      min_new_tokens=NEW_TOKENS, do_sample=False, repetition_penalty=1.3)
        expected.append(out[0, ids.shape[1]:].tolist())
    for policy in FAMILY_POLICIES[backbone.family]:
        outputs = engine.generate(PROMPTS[:4], Strategy.early_exit(ConstantRule(0.0), policy))
        for row, (ours, tokens) in enumerate(zip(outputs, expected)):
            assert ours.token_ids == tokens or any(t.kind == "logit_margin" for t in ours.near_ties), (
                f"{backbone_name} never-exit {policy}, row {row}")
            assert ours.exit_layers == [backbone.num_layers] * NEW_TOKENS


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_a_constant_confidence_at_its_threshold_is_no_near_tie(methods: dict[str, Methods], value: float) -> None:
    """A rule that returns a number (saturation at its first exit, a constant) decides every row alike at
    every batch shape: sitting exactly on the threshold (saturation at t0) is then no near tie, and
    the rows are not re-decoded; a confidence tensor at the threshold is one."""
    backbone = methods["tiny_mistral"].backbone
    engine = batched_engine(backbone, 1.0, 8, True)
    outputs = engine.generate(PROMPTS, Strategy.early_exit(ConstantRule(value, threshold=value), "copy"))
    assert all(layers == [backbone.num_layers] + [EXITS[0]] * (len(layers) - 1) for layers in (g.exit_layers for g in outputs))
    assert not [t for g in outputs for t in g.near_ties if t.kind == "confidence"]

    class TensorRule(ConstantRule):
        def confidence(self, point, hidden, state):
            return hidden.new_full((hidden.shape[0],), self.value)

    outputs = engine.generate(PROMPTS, Strategy.early_exit(TensorRule(value, threshold=value), "copy"))
    assert all(any(t.kind == "confidence" for t in g.near_ties) for g in outputs if len(g.token_ids) > 1)


def test_rows_leave_the_batch_when_they_stop(methods: dict[str, Methods]) -> None:
    """The prompts end rows at different steps (stop strings, max new tokens), in one batch."""
    outputs = batched_engine(methods["tiny_mamba2"].backbone, 1.0, 8, True).generate(PROMPTS, Strategy.full())
    assert len({len(g.token_ids) for g in outputs}) > 1
    assert {g.stop_reason for g in outputs} >= {"stop_string", "max_new_tokens"}


def test_verify_re_decodes_and_explains_differences(methods: dict[str, Methods]) -> None:
    m = methods["tiny_mistral"]
    strategy = m.strategy("ee-calm-0", 1.0)
    outputs = batched_engine(m.backbone, 1.0, 8, True).generate(PROMPTS, strategy)
    reference = reference_engine(m.backbone, 1.0)
    agreement = verify(reference, PROMPTS, strategy, outputs, all_rows=True)
    assert agreement.rows == agreement.rows_redecoded == len(PROMPTS)
    assert agreement.rows_with_near_ties == sum(1 for g in outputs if g.near_ties)
    assert not agreement.unexplained

    # A changed token is found; explained by a near tie recorded at that token, unexplained without one.
    tampered = copy.deepcopy(outputs)
    tampered[2].token_ids[0] += 1
    tampered[2].near_ties = []
    tampered[5].token_ids[0] += 1
    tampered[5].near_ties = [NearTie(token=0, kind="logit_margin", layer=8, value=1e-5)]
    agreement = verify(reference, PROMPTS, strategy, tampered)
    assert agreement.rows_redecoded == sum(1 for g in tampered if g.near_ties)
    found = {d.row: d for d in agreement.differences}
    assert 2 not in found  # no near tie: not re-decoded
    assert found[5].token == 0 and found[5].reasons == tampered[5].near_ties and agreement.tokens_differing >= 1
    everything = verify(reference, PROMPTS, strategy, tampered, all_rows=True)
    assert [d.row for d in everything.unexplained] == [2]


def test_verify_re_decodes_a_row_through_its_last_near_tie(methods: dict[str, Methods]) -> None:
    """A near-tie row that batch 1 matches through its last near tie keeps its batched output, at the
    cost of those tokens only; one that differs there is decoded to its end at batch 1."""
    m = methods["tiny_mistral"]
    strategy = m.strategy("ee-calm-0", 1.0)
    outputs = batched_engine(m.backbone, 1.0, 8, True).generate(PROMPTS, strategy)
    reference = reference_engine(m.backbone, 1.0)
    longest = max(range(len(outputs)), key=lambda r: len(outputs[r].token_ids))
    assert len(outputs[longest].token_ids) >= 3
    marked = copy.deepcopy(outputs)
    for generation in marked:
        generation.near_ties = []
    marked[longest].near_ties = [NearTie(token=1, kind="logit_margin", layer=8, value=1e-5)]
    agreement = verify(reference, PROMPTS, strategy, marked)
    assert agreement.rows_redecoded == 1 and agreement.tokens_redecoded == 2
    assert not agreement.differences and not agreement.references

    marked[longest].token_ids[1] += 1  # batch 1 differs at the near tie: the row is decoded to its end
    agreement = verify(reference, PROMPTS, strategy, marked)
    assert [d.row for d in agreement.differences] == [longest] and agreement.differences[0].token == 1
    assert agreement.references[longest].token_ids == outputs[longest].token_ids
    assert agreement.tokens_redecoded == 2 + len(outputs[longest].token_ids)


@pytest.mark.parametrize("backbone_name", list(METHODS))
def test_a_sweep_is_checked_row_by_row_with_one_prompt_pass(methods: dict[str, Methods], backbone_name: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`verify_each` over a sweep's strategies gives each the agreement `verify` gives it alone, and runs
    a row's batch-1 prompt forward once, the stateful rule's state built from it, not once per strategy."""
    m = methods[backbone_name]
    names = [n for n in METHODS[backbone_name] if n.startswith("ee-")] + ["full", "oracle"]
    strategies = [m.strategy(name, 1.0) for name in names]
    each = batched_engine(m.backbone, 1.0, 8, True).generate_each(PROMPTS, strategies)
    reference = reference_engine(m.backbone, 1.0)
    alone = [verify(reference, PROMPTS, s, g, all_rows=True) for s, g in zip(strategies, each)]
    forwards = []
    run = reference._prefill
    monkeypatch.setattr(reference, "_prefill", lambda *args: forwards.append(1) or run(*args))
    together = verify_each(reference, PROMPTS, strategies, each, all_rows=True)
    assert [a.as_dict() for a in together] == [a.as_dict() for a in alone]
    for a, b in zip(together, alone):
        assert {r: trace(g) for r, g in a.references.items()} == {r: trace(g) for r, g in b.references.items()}
    assert any(s.stateful for s in strategies)  # the mamba kind reads the prompt too
    assert Strategy.prune(m.backbone.num_layers, 0) == Strategy.full()  # and prune0, which is the full model
    assert len(forwards) == len(PROMPTS)  # one forward per row: every strategy keeps every layer


@pytest.mark.parametrize("backbone_name", list(METHODS))
def test_a_prompt_store_serves_later_checks_without_a_forward(methods: dict[str, Methods], backbone_name: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A calibration job's checks: the trajectories' full-model forwards, kept in a store, serve the checks of a
    sweep (the stateful rule building its state from the kept exit states) without a forward of their own, twice
    over, and every agreement and re-decoded row is what a check without the store gives."""
    m = methods[backbone_name]
    strategies = [m.strategy(name, 1.0) for name in METHODS[backbone_name] if name.startswith("ee-")]
    each = batched_engine(m.backbone, 1.0, 8, True).generate_each(PROMPTS, strategies)
    reference = reference_engine(m.backbone, 1.0)
    alone = verify_each(reference, PROMPTS, strategies, each, all_rows=True)
    store = PromptStore()
    for prompt in PROMPTS:
        reference.prompt_passes(prompt, [Strategy.full()], store)
    forwards = []
    run = reference._prefill
    monkeypatch.setattr(reference, "_prefill", lambda *args: forwards.append(1) or run(*args))
    for _ in range(2):
        stored = verify_each(reference, PROMPTS, strategies, each, all_rows=True, store=store)
        assert [a.as_dict() for a in stored] == [a.as_dict() for a in alone]
        for a, b in zip(stored, alone):
            assert {r: trace(g) for r, g in a.references.items()} == {r: trace(g) for r, g in b.references.items()}
    assert forwards == [] and store.hits == 2 * len(PROMPTS)
    stateful = next(s for s in strategies if s.stateful)
    fresh = reference.prompt_pass(PROMPTS[0], stateful)
    kept = reference.prompt_passes(PROMPTS[0], [stateful], store)[stateful.prompt_pass()]
    assert torch.equal(kept.hidden, fresh.hidden) and kept.state.keys() == fresh.state.keys()
    assert all(torch.equal(kept.state[k], fresh.state[k]) for k in fresh.state)


def test_a_prompt_store_keeps_the_most_recently_used_forwards_within_its_budget() -> None:
    def forward(rows: int) -> PromptForward:
        return PromptForward(cache=SimpleNamespace(layers=[SimpleNamespace(keys=torch.zeros(rows, 4), values=[])]),
                             hidden=torch.zeros(rows, 4), exits={})

    store = PromptStore(budget=3 * 2 * 16)  # three forwards of one row (16 bytes of K, 16 of hidden)
    for key in "abc":
        store.put(key, forward(1))
    assert store.get("a") is not None  # "b" is now the least recently used
    store.put("d", forward(1))
    assert list(store.forwards) == ["c", "a", "d"] and store.held == 3 * 32
    store.put("e", forward(4))  # larger than the budget: not kept
    assert store.get("e") is None and (store.hits, store.misses) == (1, 1)


@pytest.mark.parametrize("backbone_name", list(METHODS))
def test_kept_prompt_passes_decode_like_fresh_ones(methods: dict[str, Methods], backbone_name: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The repeats of a timing (`kept`): the first call prefills each batch and keeps it, later calls
    decode from copies, and every call gives what a call without `kept` gives."""
    m = methods[backbone_name]
    strategy = m.strategy(METHODS[backbone_name][-2], 1.0)  # an ee method
    engine = batched_engine(m.backbone, 1.0, 3, True)
    fresh = engine.generate(PROMPTS, strategy)
    runs = []
    run = Prefiller.run
    monkeypatch.setattr(Prefiller, "run", lambda self, *args: runs.append(1) or run(self, *args))
    kept: dict = {}
    repeats = [engine.generate(PROMPTS, strategy, kept=kept) for _ in range(3)]
    batches = len(plan_batches([engine.tokenize(p) for p in PROMPTS], 3, True).batches)
    assert len(runs) == len(kept) == batches
    for outputs in repeats:
        assert [trace(g) for g in outputs] == [trace(g) for g in fresh]


def test_mamba2_prefix_state_continues_like_the_whole_prompt(tiny_mamba2: Backbone) -> None:
    """transformers' Mamba-2 chunked scan continues a multi-token suffix from a cached conv/SSM
    state (initial_states, the cached conv window): prefix then suffix equals the whole prompt."""
    stack = layer_stack(tiny_mamba2.model)
    ids = tiny_mamba2.tokenizer(PROMPTS[4], return_tensors="pt").input_ids
    split = ids.shape[1] - 7

    def run(chunks: list[torch.Tensor]) -> torch.Tensor:
        cache = stack.new_cache()
        seen = 0
        for chunk in chunks:
            seen += chunk.shape[1]
            hidden = stack.embed(chunk)
            inputs = stack.step_inputs(hidden, cache, torch.ones(1, seen, dtype=torch.long))
            for index in range(stack.num_layers):
                hidden = stack.layer(index, hidden, cache, inputs)
        return stack.head(hidden)

    with torch.inference_mode():
        torch.testing.assert_close(run([ids[:, :split], ids[:, split:]]), run([ids]), atol=1e-5, rtol=1e-5)
    clf = build_classifier("mamba", 64, {"head_dim": 16, "chunk_size": 8}).eval()
    x = torch.randn(1, 29, 64)
    with torch.no_grad():
        state = clf.new_state()
        parts = torch.cat([clf(x[:, :17], state), clf(x[:, 17:], state)], dim=1)
        torch.testing.assert_close(parts, clf(x), atol=1e-5, rtol=1e-4)


def test_plan_shares_a_token_prefix_only_where_the_tokens_match() -> None:
    head = list(range(100, 100 + MIN_SHARED_PREFIX + 4))
    prompts = [head + [1, 2], [7, 8, 9], head + [3], head[:-1] + [5, 6], head[:5] + [9] * 30]
    plan = plan_batches(prompts, batch_size=2, share_prefixes=True)
    assert sorted(i for batch in plan.batches for i in batch) == list(range(5))
    assert plan.prefix_lengths == [len(head) - 1, 0, len(head) - 1, len(head) - 1, 0]
    # The group's prefix never takes a prompt's last token: every row keeps a suffix.
    assert shared_prefix_lengths([head, head + [1]], [0, 1]) == [len(head) - 1, len(head) - 1]
    unshared = plan_batches(prompts, batch_size=2, share_prefixes=False)
    assert unshared.prefix_lengths == [0] * 5
    assert [len(prompts[i]) for b in unshared.batches for i in b] == sorted(map(len, prompts), reverse=True)


def test_plan_batches_rows_of_like_suffix_length_across_prefixes() -> None:
    """Rows continue from different shared prefixes in one batch; what a batch pads is its suffixes,
    so rows are taken longest suffix first (CoQA: a story's early and late turns)."""
    story_a, story_b = list(range(100, 140)), list(range(200, 240))
    prompts = [story_a + [1] * 3, story_a + [1] * 30, story_b + [2] * 4, story_b + [2] * 28]
    plan = plan_batches(prompts, batch_size=2, share_prefixes=True)
    assert plan.prefix_lengths == [len(story_a) + 2, len(story_a) + 2, len(story_b) + 3, len(story_b) + 3]
    assert plan.batches == [[1, 3], [0, 2]]  # suffixes 28 and 25 together, then 1 and 1


def test_row_state_select_write_and_stack() -> None:
    state = {"h": torch.arange(6.0).view(3, 2)}
    part = select_rows(state, torch.tensor([2, 0]))
    part["h"] += 10
    part["new"] = torch.ones(2, 1)
    write_rows(state, torch.tensor([2, 0]), part, 3)
    assert state["h"].tolist() == [[10.0, 11.0], [2.0, 3.0], [14.0, 15.0]]
    assert state["new"].tolist() == [[1.0], [0.0], [1.0]]
    copy_ = clone_rows(state)
    copy_["h"].zero_()
    assert cat_rows([state, copy_])["h"].shape == (6, 2) and state["h"].abs().sum() > 0


def metaspace_tokenizer(clean_up: bool) -> PreTrainedTokenizerFast:
    """A SentencePiece-style tokenizer (word-start marker, byte fallback), trained here in memory:
    a token decoded alone loses its leading space, and byte tokens split characters."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace()])
    text = ["Hello world, this is a test . Café naïve résumé, 東京 and 🙂 here !",
            "The quick brown fox jumps over the lazy dog.\n\nQuestion: who? Answer: me."] * 20
    special = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=420, special_tokens=special))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   clean_up_tokenization_spaces=clean_up)


@pytest.mark.parametrize("which", ["smollm2_bpe", "metaspace", "metaspace_clean_up"])
def test_incremental_stop_strings_equal_searching_the_whole_decode(which: str, tiny_mistral: Backbone) -> None:
    tokenizer = tiny_mistral.tokenizer if which == "smollm2_bpe" else metaspace_tokenizer(which.endswith("clean_up"))
    rng = random.Random(0)
    sample = tokenizer("Café 東京 🙂 naïve.\n\nQuestion: who? Answer: it is .", add_special_tokens=False).input_ids
    for trial in range(150):
        # Random ids (byte tokens split characters, special tokens vanish) mixed with real text.
        tokens = [rng.randrange(len(tokenizer)) if rng.random() < 0.5 else rng.choice(sample) for _ in range(24)]
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        stops = sorted({text[i:i + rng.randint(1, 3)] for i in rng.sample(range(len(text)), min(3, len(text)))} | {"\n"})
        watch = StopStrings(tokenizer, stops)
        for k, token in enumerate(tokens, start=1):
            expected = any(s in tokenizer.decode(tokens[:k], skip_special_tokens=True) for s in stops)
            assert watch.push(token) == expected, f"{which} trial {trial}: {tokens[:k]} stops {stops}"
            if expected:
                break


@pytest.mark.slow
def test_smollm2_batched_rows_equal_batch_one(smollm2: Backbone) -> None:
    """Real weights on real task prompts (TriviaQA's 5-shot block and TruthfulQA's QA primer are
    shared prefixes), `full` and max-softmax early exit: every row re-decoded at batch 1."""
    exits = [15, 20, 24, 29]
    for task_name, num_fewshot in (("triviaqa", 5), ("truthfulqa", 0)):
        task = get_task(task_name)
        prompts = [s.prompt for s in task.load({"kind": "embedded"}, limit=6, num_fewshot=num_fewshot)]
        settings = {"exit_layers": exits, "max_new_tokens": 16, "stop_strings": task.stop_strings,
                    "repetition_penalty": 1.2}
        reference = EarlyExitGenerator(smollm2.model, smollm2.tokenizer, **settings)
        batched = BatchedGenerator(smollm2.model, smollm2.tokenizer, batch_size=8, **settings)
        for strategy in (Strategy.full(), Strategy.early_exit(MaxSoftmaxRule(0.6), "copy")):
            outputs = batched.generate(prompts, strategy)
            agreement = verify(reference, prompts, strategy, outputs, all_rows=True)
            assert not agreement.unexplained, agreement.as_dict()
            assert agreement.rows_differing <= agreement.rows_with_near_ties
            if strategy.rule is not None:
                assert any(layer < smollm2.num_layers for g in outputs for layer in g.exit_layers)


@pytest.mark.parametrize("method", ["ee-calm-0", "oracle"])
def test_near_ties_name_the_token_kind_exit_and_value(methods: dict[str, Methods], method: str) -> None:
    """Bounds so wide that every token and every decision is a near tie: each token has its logit margin
    at the layer it was read at, and each decode token one record per exit it passed (the rule's
    confidence there, or the oracle's margin at that exit), in the order of the exits."""
    m = methods["tiny_mistral"]
    engine = batched_engine(m.backbone, 1.0, 8, True)
    engine.bounds = Bounds(logit_margin=2.0, confidence=1e9, probability_floor=1e9)
    outputs = engine.generate(PROMPTS, m.strategy(method, 1.0))
    kind = "oracle_margin" if method == "oracle" else "confidence"
    for g in outputs:
        margins = [t for t in g.near_ties if t.kind == "logit_margin"]
        assert [(t.token, t.layer) for t in margins] == list(enumerate(g.exit_layers))
        assert all(isinstance(t.value, float) and 0.0 <= t.value <= 2.0 for t in margins)
        decisions = [t for t in g.near_ties if t.kind == kind]
        assert [(t.token, t.layer) for t in decisions] == [
            (i, layer) for i in range(1, len(g.token_ids)) for layer in EXITS if layer <= g.exit_layers[i]]
        assert all(isinstance(t.value, float) for t in decisions)
        assert len(g.near_ties) == len(margins) + len(decisions)


def test_a_batch_that_may_reach_the_sliding_window_is_refused(methods: dict[str, Methods],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The static cache holds every position: a backbone with a sliding window (Mistral 7B: 4096) decodes at
    batch 1 once a sequence may reach it."""
    backbone = methods["tiny_mistral"].backbone
    ids = [backbone.tokenizer(p).input_ids for p in PROMPTS[:3]]
    reach = max(map(len, ids)) + NEW_TOKENS
    monkeypatch.setattr(backbone.model.config, "sliding_window", reach, raising=False)
    with pytest.raises(ValueError, match=rf"^sequences may reach the sliding window \({reach}\): decode them at batch 1$"):
        batched_engine(backbone, 1.0, 3, False).generate(ids, Strategy.full())
    monkeypatch.setattr(backbone.model.config, "sliding_window", reach + 1)
    outputs = batched_engine(backbone, 1.0, 3, False).generate(ids, Strategy.full())
    assert len(outputs) == 3 and all(g.first_token_seconds > 0 for g in outputs)
