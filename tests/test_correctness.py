"""engine/correctness.py and engine/neartie.py: how a batched run is checked against batch 1.

The batched side is the reference path's own output, changed where a test needs a row the batch
"changed"; the reference side is the real batch-1 engine on the tiny Mistral.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.engine import EarlyExitGenerator, Generation, NearTie, Strategy, verify, verify_each
from dynamax_bench.engine.correctness import Agreement, Difference, first_difference, trace
from dynamax_bench.engine.neartie import CONFIDENCE_BOUND, LOGIT_MARGIN_BOUND, PROBABILITY_FLOOR, Bounds

PROMPTS = ["The three primary colours are", "def fibonacci(n):", "Once upon a time"]
TOKENS = 6


@pytest.fixture(scope="module")
def reference(tiny_mistral: Backbone) -> EarlyExitGenerator:
    return EarlyExitGenerator(tiny_mistral.model, tiny_mistral.tokenizer, exit_layers=[4, 6], max_new_tokens=TOKENS)


@pytest.fixture(scope="module")
def batch_one(reference: EarlyExitGenerator) -> list[Generation]:
    return [reference.generate(prompt, Strategy.full()) for prompt in PROMPTS]


def tie(token: int) -> NearTie:
    return NearTie(token=token, kind="logit_margin", layer=8, value=1e-6)


def changed(generation: Generation, at: int, ties: list[NearTie], drop_tail: bool = False) -> Generation:
    """The row with another token at `at` (and, with drop_tail, nothing after it)."""
    tokens = list(generation.token_ids)
    tokens[at] += 1
    layers = list(generation.exit_layers)
    if drop_tail:
        tokens, layers = tokens[:at + 1], layers[:at + 1]
    return dataclasses.replace(generation, token_ids=tokens, exit_layers=layers, near_ties=ties)


def test_first_difference_and_trace() -> None:
    assert first_difference([(1, 8), (2, 8)], [(1, 8), (2, 8)]) is None
    assert first_difference([(1, 8), (2, 8)], [(1, 8), (2, 4)]) == 1  # the exit layer counts
    assert first_difference([(1, 8), (3, 8)], [(1, 8), (2, 8)]) == 1
    assert first_difference([(1, 8)], [(1, 8), (2, 8)]) == 1  # one row is longer
    assert first_difference([(1, 8), (2, 8), (5, 8)], [(1, 8)]) == 1
    assert first_difference([], []) is None and first_difference([], [(1, 8)]) == 0
    generation = Generation(prompt_ids=[0], token_ids=[5, 6], text="", exit_layers=[8, 4], stop_reason="eos")
    assert trace(generation) == [(5, 8), (6, 4)]


def test_rows_without_near_ties_are_not_re_decoded(reference: EarlyExitGenerator, batch_one: list[Generation]) -> None:
    agreement = verify(reference, PROMPTS, Strategy.full(), batch_one)
    assert (agreement.rows, agreement.rows_with_near_ties, agreement.rows_redecoded, agreement.tokens_redecoded) == (
        3, 0, 0, 0)
    assert agreement.differences == [] and agreement.references == {}


def test_a_tied_row_that_agrees_is_re_decoded_through_its_last_near_tie_only(
        reference: EarlyExitGenerator, batch_one: list[Generation]) -> None:
    rows = [dataclasses.replace(batch_one[0], near_ties=[tie(0), tie(2)]), *batch_one[1:]]
    agreement = verify(reference, PROMPTS, Strategy.full(), rows)
    assert (agreement.rows_with_near_ties, agreement.rows_redecoded, agreement.tokens_redecoded) == (1, 1, 3)
    assert agreement.rows_differing == 0 and agreement.references == {}


def test_a_row_that_differs_at_its_near_tie_is_explained_and_takes_the_batch_one_output(
        reference: EarlyExitGenerator, batch_one: list[Generation]) -> None:
    row = changed(batch_one[1], at=2, ties=[tie(1), tie(2)])
    agreement = verify(reference, PROMPTS, Strategy.full(), [batch_one[0], row, batch_one[2]])
    assert agreement.rows_differing == 1 and agreement.tokens_differing == 1
    assert agreement.differences == [Difference(row=1, token=2, reasons=[tie(2)])] and agreement.unexplained == []
    assert agreement.references[1].token_ids == batch_one[1].token_ids  # the batch-1 output, to its end
    assert agreement.tokens_redecoded == 3 + TOKENS  # through the last near tie, then the whole row
    assert agreement.as_dict()["differences"] == [{"row": 1, "token": 2, "reasons": [tie(2).as_dict()]}]
    assert agreement.as_dict()["unexplained"] == 0


def test_a_difference_at_no_near_tie_is_unexplained(reference: EarlyExitGenerator,
                                                    batch_one: list[Generation]) -> None:
    row = changed(batch_one[2], at=1, ties=[tie(3)])
    agreement = verify(reference, PROMPTS, Strategy.full(), [*batch_one[:2], row])
    assert [d.row for d in agreement.unexplained] == [2] and agreement.differences[0].token == 1


def test_missing_tokens_count_as_differing(reference: EarlyExitGenerator, batch_one: list[Generation]) -> None:
    row = changed(batch_one[0], at=1, ties=[tie(1)], drop_tail=True)  # 2 tokens where batch 1 has 6
    agreement = verify(reference, PROMPTS, Strategy.full(), [row, *batch_one[1:]], all_rows=True)
    assert agreement.rows_redecoded == 3 and agreement.tokens_redecoded == 3 * TOKENS
    assert agreement.tokens_differing == TOKENS - 1 and agreement.rows_differing == 1


def test_every_row_is_re_decoded_with_all_rows(reference: EarlyExitGenerator, batch_one: list[Generation]) -> None:
    agreement = verify(reference, PROMPTS, Strategy.full(), batch_one, all_rows=True)
    assert agreement.rows_redecoded == 3 and sorted(agreement.references) == [0, 1, 2]
    assert agreement.rows_differing == 0 and agreement.tokens_redecoded == 3 * TOKENS


def test_strategies_that_share_a_prompt_pass_re_decode_from_one(
        reference: EarlyExitGenerator, batch_one: list[Generation], monkeypatch: pytest.MonkeyPatch) -> None:
    passes = []
    original = EarlyExitGenerator._prefill
    monkeypatch.setattr(EarlyExitGenerator, "_prefill",
                        lambda self, ids, *args: passes.append(ids[0].tolist()) or original(self, ids, *args))
    tied = [dataclasses.replace(g, near_ties=[tie(0)]) for g in batch_one]
    found = verify_each(reference, PROMPTS, [Strategy.full(), Strategy.full()], [tied, batch_one[:1] + tied[1:]])
    assert [a.rows_redecoded for a in found] == [3, 2]
    # one prompt pass per re-decoded row, shared by both strategies
    assert passes == [reference.tokenize(p) for p in PROMPTS]


def test_counts_add_up_over_every_differing_row(reference: EarlyExitGenerator, batch_one: list[Generation]) -> None:
    rows = [changed(batch_one[0], at=1, ties=[tie(1)]), changed(batch_one[1], at=3, ties=[tie(3)]), batch_one[2]]
    agreement = verify(reference, PROMPTS, Strategy.full(), rows)
    assert (agreement.rows_differing, agreement.tokens_differing) == (2, 2)
    assert agreement.tokens_redecoded == (2 + TOKENS) + (4 + TOKENS)  # each row: through its tie, then whole


def test_a_batched_row_longer_than_batch_one_counts_its_extra_tokens(reference: EarlyExitGenerator,
                                                                    batch_one: list[Generation]) -> None:
    longer = dataclasses.replace(batch_one[2], token_ids=[*batch_one[2].token_ids, 7],
                                 exit_layers=[*batch_one[2].exit_layers, 8], near_ties=[tie(TOKENS)])
    agreement = verify(reference, PROMPTS, Strategy.full(), [*batch_one[:2], longer])
    assert (agreement.rows_differing, agreement.tokens_differing) == (1, 1)
    assert agreement.differences == [Difference(row=2, token=TOKENS, reasons=[tie(TOKENS)])]


def test_a_row_only_a_later_strategy_re_decodes_is_re_decoded(reference: EarlyExitGenerator,
                                                             batch_one: list[Generation]) -> None:
    tied = [dataclasses.replace(g, near_ties=[tie(0)]) for g in batch_one]
    found = verify_each(reference, PROMPTS, [Strategy.full(), Strategy.full()], [batch_one[:1] + tied[1:], tied])
    assert [a.tokens_redecoded for a in found] == [2, 3]  # one token per row: through the near tie at 0


def test_strategies_that_read_the_prompt_differently_each_run_their_own_pass(
        reference: EarlyExitGenerator, batch_one: list[Generation], monkeypatch: pytest.MonkeyPatch) -> None:
    pruned = Strategy.prune(8, 4)
    pruned_rows = [dataclasses.replace(reference.generate(p, pruned), near_ties=[tie(0)]) for p in PROMPTS]
    passes = []
    original = EarlyExitGenerator._prefill
    monkeypatch.setattr(EarlyExitGenerator, "_prefill",
                        lambda self, ids, layers: passes.append(layers) or original(self, ids, layers))
    tied = [dataclasses.replace(g, near_ties=[tie(0)]) for g in batch_one]
    found = verify_each(reference, PROMPTS, [Strategy.full(), pruned], [tied, pruned_rows], all_rows=True)
    assert passes == [8, 4] * 3
    assert [a.rows_differing for a in found] == [0, 0]  # each decoded from its own prompt pass


def test_lengths_that_do_not_match_are_refused(reference: EarlyExitGenerator, batch_one: list[Generation]) -> None:
    with pytest.raises(ValueError, match="3 prompts but 2 generations"):
        verify(reference, PROMPTS, Strategy.full(), batch_one[:2])
    with pytest.raises(ValueError, match="2 strategies but 1 lists of generations"):
        verify_each(reference, PROMPTS, [Strategy.full(), Strategy.full()], [batch_one])


def test_agreement_record_names_its_bounds() -> None:
    record = Agreement(rows=2, rows_with_near_ties=1, rows_redecoded=1, bounds=Bounds(1e-4, 2e-4)).as_dict()
    assert record == {"rows": 2, "rows_with_near_ties": 1, "rows_redecoded": 1, "tokens_redecoded": 0,
                      "rows_differing": 0, "tokens_differing": 0, "unexplained": 0, "differences": [],
                      "bounds": {"logit_margin": 1e-4, "confidence": 2e-4, "probability_floor": 1e-5}}
    assert Agreement(rows=0, rows_with_near_ties=0, rows_redecoded=0).as_dict()["bounds"] is None


def test_bounds_scale_with_the_dtypes_machine_epsilon() -> None:
    assert Bounds.for_dtype(torch.float32) == Bounds(LOGIT_MARGIN_BOUND, CONFIDENCE_BOUND) == Bounds(2e-4, 7e-4)
    half = Bounds.for_dtype(torch.bfloat16)
    assert half.logit_margin == pytest.approx(2e-4 * 2**16) and half.confidence == pytest.approx(7e-4 * 2**16)
    assert half.probability_floor == pytest.approx(PROBABILITY_FLOOR * 2**16)


def test_margins_are_the_top_two_gap_over_the_largest_magnitude() -> None:
    scores = torch.tensor([[3.0, 1.0, 0.0], [-1.0, -2.0, -4.0], [0.0, 0.0, 0.0], [2.0, 2.0, -8.0]])
    assert Bounds.margins(scores).tolist() == pytest.approx([2 / 3, 1 / 4, 0.0, 0.0])
    assert Bounds.margins(torch.tensor([[1.0, 4.0]])).tolist() == pytest.approx([3 / 4])  # a two-entry head


@pytest.mark.parametrize(("device", "dtype", "turned_off"), [
    ("cuda", torch.float32, True), ("cuda", torch.bfloat16, False), ("cpu", torch.float32, False)])
def test_a_float32_engine_on_cuda_turns_tf32_off(device: str, dtype: torch.dtype, turned_off: bool) -> None:
    """TF32 matmuls and convolutions would move float32 results past the near-tie bounds; only a float32
    engine on CUDA needs them off (the flags are plain switches, settable on a CPU build)."""
    from dynamax_bench.engine.neartie import ieee_float32

    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        ieee_float32(torch.device(device), dtype)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (not turned_off,) * 2
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_confidence_ties_are_within_the_bound_relative_to_the_larger_of_confidence_and_threshold() -> None:
    bounds = Bounds(logit_margin=2e-4, confidence=0.01)
    confidence = torch.tensor([0.5, 0.504, 0.506, 0.4955, 0.494, 0.2, 1e-4])
    assert bounds.confidence_ties(confidence, 0.5).tolist() == [True, True, False, True, False, False, False]
    # the scale is max(|confidence|, |threshold|): at threshold 0 only the confidence's own
    assert bounds.confidence_ties(torch.tensor([0.0, 1e-3]), 0.0).tolist() == [True, False]
    assert bounds.confidence_ties(torch.tensor([0.1005, 0.102]), 0.1).tolist() == [True, False]


def test_a_probabilitys_ties_narrow_towards_the_nearer_end() -> None:
    """A softmax probability moves with p(1 - p): near 1 its band is relative to 1 - p, plus the floor."""
    bounds = Bounds(logit_margin=2e-4, confidence=0.05, probability_floor=1e-6)
    saturated = torch.tensor([1.0, 0.99995, 0.999904, 0.9999, 0.999896, 0.99988])
    assert bounds.confidence_ties(saturated, 0.9999).tolist() == [True] * 6  # relative to the larger: 0.05
    # relative to the nearer end, 1 - 0.9999 above the threshold and 1 - c below it: 6e-6 wide
    assert bounds.confidence_ties(saturated, 0.9999, probability=True).tolist() == [
        False, False, True, True, True, False]
    # below one half the nearer end is the larger of the two, as for any confidence
    middle = torch.tensor([0.2, 0.209, 0.2115, 0.191, 0.1885])
    assert bounds.confidence_ties(middle, 0.2, probability=True).tolist() == [True, True, False, True, False]
    # the floor: a value next to 1 that rounding alone could move across the threshold
    assert bounds.confidence_ties(torch.tensor([1.0, 1.0 - 2e-6]), 1.0 - 5e-7, probability=True).tolist() == [
        True, False]
    # the floor is relative to the larger value, as rounding is: next to 0 it is no wider than that
    rounding = Bounds(logit_margin=2e-4, confidence=0.0, probability_floor=1e-3)
    assert rounding.confidence_ties(torch.tensor([1e-3 + 5e-7, 1e-3 + 2e-6]), 1e-3, probability=True).tolist() == [
        True, False]
    # the band is closed: a distance exactly on its edge (every value exact in binary) is a near tie
    no_floor = Bounds(logit_margin=2e-4, confidence=0.5, probability_floor=0.0)  # band 0.5 * min(0.75, 0.5)
    assert no_floor.confidence_ties(torch.tensor([0.75, 0.7500001]), 0.5, probability=True).tolist() == [True, False]
    floor = Bounds(logit_margin=2e-4, confidence=0.5, probability_floor=0.25)  # 0.5 * 0.5 + 0.25 * 1.0 = |1 - 0.5|
    assert floor.confidence_ties(torch.tensor([1.0]), 0.5, probability=True).tolist() == [True]
    # never wider than the band relative to the larger value, but for the floor
    values = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    for threshold in (0.1, 0.5, 0.9, 0.999):
        narrow = bounds.confidence_ties(values, threshold, probability=True)
        wide = bounds.confidence_ties(values, threshold) | ((values - threshold).abs() <= 1e-6)
        assert not (narrow & ~wide).any()


def test_near_tie_record() -> None:
    assert NearTie(token=3, kind="confidence", layer=6, value=-1e-5).as_dict() == {
        "token": 3, "kind": "confidence", "layer": 6, "value": -1e-5}
