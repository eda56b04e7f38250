"""Training-free exit rules, and a new exit method plugged in through an entry point."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.engine import EarlyExitGenerator, ExitPoint, Strategy
from dynamax_bench.engine.rules import ConstantRule, ExitHead, ExitRule, decide
from dynamax_bench.classifiers.registry import EXIT_METHODS, is_trained, known_kinds, load_plugins
from dynamax_bench.classifiers.training_free import MaxSoftmaxRule, SaturationRule
from dynamax_bench.generation.strategy import build_strategy
from dynamax_bench.spec import parse_method

PROMPT = "Question: Which planet is known as the Red Planet?\nAnswer:"


def test_max_softmax_confidence_is_the_heads_top_probability() -> None:
    head = torch.nn.Linear(8, 5).requires_grad_(False)
    point = ExitPoint(index=0, layer=4, head=lambda h: head(h[:, -1]))
    hidden = torch.randn(3, 1, 8)
    expected = head(hidden[:, -1]).softmax(-1).max(-1).values
    torch.testing.assert_close(MaxSoftmaxRule(0.5).confidence(point, hidden, {}), expected)


def test_saturation_compares_consecutive_exits_and_leaves_at_the_first_only_at_threshold_zero() -> None:
    rule = SaturationRule(0.99)
    first, second = (ExitPoint(index=i, layer=4 + i, head=lambda h: h) for i in range(2))
    h = torch.randn(2, 1, 8)
    state: dict = {}  # per row: the hidden state at the previous exit
    confidence, leave, exact = decide(rule, first, h, state)
    assert confidence.tolist() == [0.0, 0.0] and not leave.any()
    assert exact  # a number, the same for every row at every batch shape: never a near tie
    assert decide(SaturationRule(0.0), first, h, {})[1].all()  # 0.0 >= 0
    assert rule.confidence(second, h, state).tolist() == pytest.approx([1.0, 1.0])  # the same state twice: saturated
    assert rule.confidence(second, -h, state).tolist() == pytest.approx([-1.0, -1.0])


def test_max_softmax_at_threshold_zero_leaves_at_the_first_exit(tiny_mistral: Backbone) -> None:
    generator = EarlyExitGenerator(tiny_mistral.model, tiny_mistral.tokenizer, exit_layers=[4, 6], max_new_tokens=6)
    out = generator.generate(PROMPT, build_strategy(parse_method("ee-maxsoftmax-copy-t0"), tiny_mistral))
    assert set(out.exit_layers[1:]) == {4}


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown exit method kind 'lstm'; known kinds: \[.*'maxsoftmax'"):
        is_trained("lstm")


def test_a_package_adds_an_exit_method_through_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_mamba2: Backbone
) -> None:
    """An installed distribution (a .dist-info on sys.path) declares a rule; the suite runs it."""
    (tmp_path / "my_exit_rule.py").write_text(textwrap.dedent("""
        from dynamax_bench.engine import ExitRule

        class HalfwayRule(ExitRule):
            '''Leaves at every exit after the first: a rule the suite has never seen.'''
            def __init__(self, threshold):
                self.threshold = threshold
            def confidence(self, point, hidden, state):
                return 1.0 if point.index >= 1 else 0.0
    """))
    dist = tmp_path / "my_exit_rule-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-exit-rule\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[dynamax_bench.exit_methods]\nhalfway = my_exit_rule:HalfwayRule\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugins.cache_clear()
    try:
        assert "halfway" in load_plugins() and "halfway" in known_kinds() and not is_trained("halfway")
        generator = EarlyExitGenerator(tiny_mamba2.model, tiny_mamba2.tokenizer, exit_layers=[4, 5, 6],
                                       max_new_tokens=5)
        out = generator.generate(PROMPT, build_strategy(parse_method("ee-halfway-skip-t0.5"), tiny_mamba2))
        assert set(out.exit_layers[1:]) == {5}
    finally:
        EXIT_METHODS.pop("halfway", None)
        sys.modules.pop("my_exit_rule", None)
        load_plugins.cache_clear()


class TensorRule(ExitRule):
    """Returns the confidences it is given, in their own dtype."""

    def __init__(self, values: torch.Tensor, threshold: float) -> None:
        self.values, self.threshold = values, threshold

    def confidence(self, point, hidden, state):
        return self.values


def test_decide_compares_float32_confidences_with_the_threshold_per_row() -> None:
    point, hidden = ExitPoint(index=0, layer=4, head=lambda h: h), torch.zeros(3, 1, 8)
    confidence, leave, exact = decide(TensorRule(torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64), 0.5), point,
                                      hidden, {})
    assert confidence.dtype == torch.float32 and leave.tolist() == [False, True, True] and not exact
    confidence, leave, exact = decide(ConstantRule(1, threshold=0.5), point, hidden, {})  # an int: every row alike
    assert confidence.dtype == torch.float32 and confidence.tolist() == [1.0] * 3 and leave.all() and exact
    never = decide(ConstantRule(0.0), point, hidden, {})
    assert never[0].tolist() == [0.0] * 3 and not never[1].any() and ConstantRule(0.0).threshold == 0.5
    base = ExitRule()  # never exits: confidence 0 below the threshold 1
    assert base.confidence(point, hidden, {}) == 0.0 and not decide(base, point, hidden, {})[1].any()


def test_an_exit_head_hands_its_last_logits_back_once_and_only_for_the_same_tensor() -> None:
    """The batched engine reads a leaving row's token from the logits the rule computed at its exit
    (max-softmax): only for the very hidden state those logits came from, and only once."""
    calls: list[torch.Tensor] = []

    def head(hidden: torch.Tensor) -> torch.Tensor:
        calls.append(hidden)
        return hidden * 2

    exit_head, hidden = ExitHead(head), torch.ones(2, 1, 3)
    assert exit_head.take(hidden) is None  # nothing computed yet
    logits = exit_head(hidden)
    assert torch.equal(logits, hidden * 2) and len(calls) == 1 and calls[0] is hidden
    assert exit_head.take(hidden) is logits
    assert exit_head.take(hidden) is None  # taken: forgotten
    exit_head(hidden)
    assert exit_head.take(hidden.clone()) is None  # equal values, another tensor: not these logits
    assert exit_head.take(hidden) is None  # and that asking forgot them too
