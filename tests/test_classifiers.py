"""Classifier kinds: registry, checkpoints, the stateful kind's step/sequence equality, and the
two degenerate classifiers that pin the engine's behaviour (never exit = full, always exit =
first exit position)."""

from __future__ import annotations

import pytest
import torch

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.classifiers.checkpoints import checkpoint_source, load_classifiers, save_classifiers
from dynamax_bench.classifiers.kinds import CalmClassifier
from dynamax_bench.classifiers.registry import build_classifier, known_kinds
from dynamax_bench.engine import ClassifierRule, EarlyExitGenerator, Strategy, layer_stack

PROMPT = "Question: What is the capital of France?\nAnswer:"


def test_registry_lists_the_three_kinds_and_rejects_an_unknown_one() -> None:
    assert {"calm", "ffn", "mamba"} <= set(known_kinds())
    with pytest.raises(ValueError, match=r"unknown exit method kind 'lstm'; known kinds: \['calm', 'ffn', 'mamba'"):
        build_classifier("lstm", 16)


@pytest.mark.parametrize("kind", ["calm", "ffn", "mamba"])
def test_every_kind_maps_hidden_states_to_two_logits(kind: str) -> None:
    clf = build_classifier(kind, 64).eval()
    with torch.no_grad():
        assert clf(torch.randn(2, 7, 64)).shape == (2, 7, 2)


def test_mamba_classifier_steps_equal_its_full_sequence_pass() -> None:
    torch.manual_seed(0)
    clf = build_classifier("mamba", 64, {"head_dim": 16, "chunk_size": 8}).eval()
    clf.mean.normal_()
    x = torch.randn(1, 21, 64)
    with torch.no_grad():
        whole = clf(x)
        state = clf.new_state()
        parts = [clf(x[:, :5], state)] + [clf(x[:, t : t + 1], state) for t in range(5, 21)]
    torch.testing.assert_close(torch.cat(parts, dim=1), whole, atol=1e-5, rtol=1e-4)


def test_mamba_classifier_started_on_one_position_steps_instead_of_scanning(monkeypatch) -> None:
    """A `_fresh` rule's first token: one position on an empty state takes the recurrent step (no chunked
    scan padded to chunk_size), with the scan's logits exactly, and the steps after it follow the
    whole-sequence pass."""
    from transformers.models.mamba2 import modeling_mamba2

    torch.manual_seed(0)
    clf = build_classifier("mamba", 64, {"head_dim": 16}).eval()
    clf.mean.normal_()
    x = torch.randn(3, 9, 64)
    scans = []
    scan = modeling_mamba2.mamba2_chunk_scan
    monkeypatch.setattr(modeling_mamba2, "mamba2_chunk_scan", lambda *a, **k: scans.append(a[0].shape) or scan(*a, **k))
    with torch.no_grad():
        scanned = clf.mixer(clf.norm(clf.standardise(x[:, :1])))
        assert len(scans) == 1
        state = clf.new_state()
        parts = [clf(x[:, t : t + 1], state) for t in range(9)]
        assert len(scans) == 1, "a stateful call on one position scanned"
        whole = clf(x)
    assert torch.equal(parts[0], scanned)
    torch.testing.assert_close(torch.cat(parts, dim=1), whole, atol=1e-5, rtol=1e-4)


def test_mamba_classifier_decision_depends_on_the_text_so_far() -> None:
    """Same hidden state, different history: the stateful kind answers differently."""
    torch.manual_seed(0)
    clf = build_classifier("mamba", 64, {"head_dim": 16}).eval()
    x, other = torch.randn(1, 6, 64), torch.randn(1, 6, 64)
    last = torch.randn(1, 1, 64)
    with torch.no_grad():
        a, b = clf.new_state(), clf.new_state()
        clf(x, a), clf(other, b)
        assert not torch.allclose(clf(last, a), clf(last, b))


@pytest.mark.parametrize("kind", ["calm", "ffn", "mamba"])
def test_checkpoint_round_trip_gives_the_same_outputs(tmp_path, kind: str) -> None:
    torch.manual_seed(0)
    classifiers = [build_classifier(kind, 64).eval() for _ in range(2)]
    save_classifiers(tmp_path / f"{kind}.safetensors", classifiers, [4, 6], {"note": "test"})
    loaded, meta = load_classifiers(tmp_path, kind)
    assert sorted(loaded) == [4, 6] and meta["note"] == "test"
    x = torch.randn(1, 5, 64)
    with torch.no_grad():
        for clf, layer in zip(classifiers, [4, 6]):
            torch.testing.assert_close(loaded[layer](x), clf(x))


def test_missing_checkpoint_says_which_rule_builds_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="distill rule"):
        load_classifiers(tmp_path, "calm")


def constant_classifiers(hidden_size: int, layers: list[int], exit_logit: float) -> dict[int, CalmClassifier]:
    """CALM classifiers with zero weights: confidence = sigmoid(exit_logit), whatever the input."""
    out = {}
    for layer in layers:
        clf = build_classifier("calm", hidden_size).eval()
        with torch.no_grad():
            clf.linear.weight.zero_()
            clf.linear.bias.copy_(torch.tensor([0.0, exit_logit]))
        out[layer] = clf
    return out


@pytest.mark.parametrize("backbone_name", ["tiny_mistral", "tiny_mamba2"])
def test_never_exit_classifier_reproduces_full_and_always_exit_leaves_at_the_first_exit(
    request: pytest.FixtureRequest, backbone_name: str
) -> None:
    backbone: Backbone = request.getfixturevalue(backbone_name)
    exits = [4, 5, 6, 7]
    generator = EarlyExitGenerator(backbone.model, backbone.tokenizer, exit_layers=exits, max_new_tokens=10)
    hidden = backbone.model.config.hidden_size
    full = generator.generate(PROMPT, Strategy.full())
    for policy in layer_stack(backbone.model).policies:
        never = Strategy.early_exit(ClassifierRule(constant_classifiers(hidden, exits, -20.0), 0.9), policy)
        out = generator.generate(PROMPT, never)
        assert out.token_ids == full.token_ids and out.exit_layers == full.exit_layers
        always = Strategy.early_exit(ClassifierRule(constant_classifiers(hidden, exits, 20.0), 0.9), policy)
        out = generator.generate(PROMPT, always)
        assert out.exit_layers[0] == backbone.num_layers  # the prompt's full forward
        assert out.exit_layers[1:] and set(out.exit_layers[1:]) == {exits[0]}


def test_a_sweep_of_several_kinds_reads_its_backbones_classifier_folder(tmp_path) -> None:
    """A rule's classifier inputs: one checkpoint is read as is, one file per kind (a sweep of every
    kind) through their folder, where `load_classifiers` finds each kind; files of two backbones are
    refused rather than read from one of them."""
    calm, ffn = tmp_path / "smollm2" / "calm.safetensors", tmp_path / "smollm2" / "ffn.safetensors"
    assert checkpoint_source(None) is None and checkpoint_source([]) is None
    assert checkpoint_source(str(calm)) == calm
    assert checkpoint_source([str(calm), str(ffn)]) == tmp_path / "smollm2"
    with pytest.raises(ValueError, match="several folders"):
        checkpoint_source([str(calm), str(tmp_path / "mamba2" / "ffn.safetensors")])


class RecordingRule(ClassifierRule):
    """The `mamba` rule, recording each confidence it gives (exit layer, value)."""

    def __init__(self, classifiers: dict, threshold: float) -> None:
        super().__init__(classifiers, threshold)
        self.seen: list[tuple[int, float]] = []

    def confidence(self, point, hidden, state):
        value = super().confidence(point, hidden, state)
        self.seen.append((point.layer, float(value[0])))
        return value


def test_mamba_rule_state_follows_every_position_of_the_text_by_value(tiny_mistral: Backbone) -> None:
    """At each exit the stateful classifier must have read, in order, the prompt's hidden states after
    that many layers, then per generated position the hidden state after that many layers, or the
    exited one where the token left earlier. Each confidence it gives equals a plain pass of the
    classifier over exactly that sequence (the backbone's own layer outputs, seen through hooks)."""
    exits = [4, 5, 6, 7]
    torch.manual_seed(0)
    classifiers = {layer: build_classifier("mamba", 64, {"head_dim": 16}).eval() for layer in exits}
    generator = EarlyExitGenerator(tiny_mistral.model, tiny_mistral.tokenizer, exit_layers=exits, max_new_tokens=12)
    probe = RecordingRule(classifiers, 1.0)
    generator.generate(PROMPT, Strategy.early_exit(probe, "copy"))
    first = sorted(value for layer, value in probe.seen if layer == exits[0])
    threshold = first[len(first) // 2]  # about half the tokens leave at the first exit

    layers = tiny_mistral.model.model.layers
    outputs: list[list[torch.Tensor]] = [[] for _ in layers]
    hooks = [layer.register_forward_hook(lambda m, a, out, i=i: outputs[i].append(
        (out[0] if isinstance(out, tuple) else out).detach().clone())) for i, layer in enumerate(layers)]
    rule = RecordingRule(classifiers, threshold)
    try:
        out = generator.generate(PROMPT, Strategy.early_exit(rule, "copy"))
    finally:
        for hook in hooks:
            hook.remove()
    ran = out.exit_layers[1:]  # layers run by each decode step (the prompt's pass ran them all)
    assert any(x < exits[-1] for x in ran) and any(x > exits[0] for x in ran)  # exits and advances happen

    steps = [[outputs[i][0] for i in range(len(layers))]]  # the prompt's pass, then each decode step
    taken = [1] * len(layers)
    for x in ran:
        steps.append([outputs[i][taken[i]] for i in range(x)])
        taken = [t + (i < x) for i, t in enumerate(taken)]
    expected = []
    with torch.no_grad():
        for e in exits:
            sequence = torch.cat([steps[0][e - 1]] + [step[min(e, len(step)) - 1] for step in steps[1:]], dim=1)
            confidence = classifiers[e](sequence).softmax(-1)[0, :, 1]
            expected.append(confidence[-len(ran):])  # the positions read by the decode steps
    wanted = [(e, float(expected[j][k])) for k, x in enumerate(ran) for j, e in enumerate(exits) if e <= x]
    assert [layer for layer, _ in rule.seen] == [layer for layer, _ in wanted]
    torch.testing.assert_close(torch.tensor([v for _, v in rule.seen]), torch.tensor([v for _, v in wanted]),
                               atol=1e-5, rtol=1e-4)
