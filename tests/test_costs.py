"""The ledger's prices: the prompt and every decode step, decisions and fills, at their lengths.

(`test_ledger_calls.py` checks the counts against the engine's real calls; these tests check
how counts become FLOPs, on a table with round numbers.)
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamax_bench.costs.ledger import cell_flops, sample_work
from dynamax_bench.costs.lengths import LengthModel, default_lengths, fit_length_model
from dynamax_bench.spec import parse_method

L, HEAD, CALM, MAMBA, PARTIAL = 8, 500, 10, 40, 100
EXITS = [4, 5, 6, 7]


def poly(*coefficients: int) -> dict:
    return LengthModel("polynomial", tuple(Fraction(c) for c in coefficients), degree=len(coefficients) - 1).to_dict()


TABLE = {
    "num_layers": L,
    "exit_positions": EXITS,
    "context_length": 16,
    "unit": "test",
    "blocks": {
        "layer_prefill": {"flops": 0, "per_length": poly(0, 100, 1)},  # 100 T + T^2 for T prompt tokens
        "layer_decode": {"flops": 0, "per_length": poly(1000, 2)},  # 1000 + 2 t with t positions cached
        "head": {"flops": HEAD}, "fill_partial": {"flops": PARTIAL}, "fill_copy": {"flops": 0},
        "fill_skip": {"flops": 0},
    },
    "exit_methods": {"calm": {"flops": CALM}, "mamba": {"flops": MAMBA, "prefill": poly(0, 30)}},
}


def prefill(t: int) -> int:
    return 100 * t + t * t


def step(t: int) -> int:
    return 1000 + 2 * t


def full_sample(prompt: int, tokens: int) -> int:
    return L * prefill(prompt) + HEAD + sum(L * step(prompt + k - 1) + HEAD for k in range(1, tokens))


def records(*samples: tuple[int, list[int]]) -> list[dict]:
    return [{"id": f"s{i}", "prompt_tokens": prompt, "layers_executed": trace} for i, (prompt, trace) in enumerate(samples)]


def test_full_saves_nothing_and_counts_prompt_and_every_step_at_its_length() -> None:
    out = cell_flops(records((10, [L, L, L]), (20, [L])), parse_method("full"), TABLE)
    decode = full_sample(10, 3) - (L * prefill(10) + HEAD)  # the two decode steps of the first sample
    assert out["per_sample"] == [{"executed": full_sample(10, 3), "full": full_sample(10, 3),
                                  "decode_executed": decode, "decode_full": decode},
                                 {"executed": full_sample(20, 1), "full": full_sample(20, 1),
                                  "decode_executed": 0, "decode_full": 0}]
    assert out["savings"] == 0.0 and out["decode_savings"] == 0.0
    assert out["prompt"] == {"executed": L * (prefill(10) + prefill(20)) + 2 * HEAD,
                             "full": L * (prefill(10) + prefill(20)) + 2 * HEAD, "tokens": 30}
    assert out["decode"]["tokens"] == 2 and out["prompt_tokens"] == [10, 20]
    assert out["per_token_full"] == pytest.approx((L * (step(10) + step(11)) + 2 * HEAD) / 2)


def test_exits_save_in_the_decode_steps_and_pay_decisions_and_fills() -> None:
    trace = [L, 5, L]  # first token from the prompt; exit after 5 layers; then every layer
    out = cell_flops(records((10, trace)), parse_method("ee-calm-partial-t0.9"), TABLE)
    exited = 5 * step(10) + HEAD + 2 * CALM + (L - 5) * PARTIAL  # decisions at exits 4 and 5, 3 layers filled
    through = L * step(11) + HEAD + 4 * CALM
    assert out["decode"]["executed"] == exited + through
    assert out["per_sample"][0]["executed"] == L * prefill(10) + HEAD + exited + through
    assert out["decode_savings"] == pytest.approx(1 - (exited + through) / (L * (step(10) + step(11)) + 2 * HEAD))
    assert out["savings"] == pytest.approx(1 - out["executed"] / full_sample(10, 3))
    assert 0 < out["savings"] < out["decode_savings"]  # the prompt runs every layer: total saves less


def test_stateful_classifier_pays_its_prompt_pass_at_every_exit_and_steps_at_every_exit() -> None:
    out = cell_flops(records((10, [L, 4])), parse_method("ee-mamba-skip-t0.9"), TABLE)
    assert out["prompt"]["executed"] == L * prefill(10) + HEAD + len(EXITS) * 30 * 10
    assert out["decode"]["executed"] == 4 * step(10) + HEAD + len(EXITS) * MAMBA


def test_oracle_is_charged_its_trace_without_decisions_and_pruning_its_kept_layers() -> None:
    oracle = cell_flops(records((10, [L, 4])), parse_method("oracle"), TABLE)
    assert oracle["executed"] == L * prefill(10) + HEAD + 4 * step(10) + HEAD
    prune = cell_flops(records((10, [6, 6])), parse_method("prune2"), TABLE)
    assert prune["executed"] == 6 * prefill(10) + HEAD + 6 * step(10) + HEAD
    assert prune["full"] == full_sample(10, 2)


def test_a_cell_without_decode_steps_has_no_decode_savings() -> None:
    out = cell_flops(records((10, [L]), (12, [L])), parse_method("ee-calm-copy-t0.9"), TABLE)
    assert out["decode_savings"] is None and out["per_token_executed"] is None and out["savings"] == 0.0


def test_stale_inputs_say_which_rule_to_rerun() -> None:
    with pytest.raises(ValueError, match="'s0'.*rerun the generate rule"):
        cell_flops([{"id": "s0", "layers_executed": [L]}], parse_method("full"), TABLE)
    stale = {**TABLE, "blocks": {**TABLE["blocks"], "layer_prefill": {"flops": 1}}}
    with pytest.raises(ValueError, match="rerun the flops rule"):
        cell_flops(records((10, [L])), parse_method("full"), stale)


traces = st.lists(st.tuples(st.integers(1, 40), st.lists(st.sampled_from([4, 5, 6, 7, L]), min_size=1, max_size=6)),
                  min_size=1, max_size=4)


@given(traces)
def test_full_saves_nothing_on_any_trace(samples: list[tuple[int, list[int]]]) -> None:
    out = cell_flops(records(*[(prompt, [L] * len(trace)) for prompt, trace in samples]), parse_method("full"), TABLE)
    assert out["savings"] == 0.0 and out["executed"] == out["full"]
    assert out["decode_savings"] in (0.0, None)


@given(traces, st.sampled_from(["ee-calm-copy-t0.5", "ee-calm-partial-t0.5", "ee-mamba-skip-t0.5", "oracle"]))
def test_the_ledger_adds_up_and_charges_each_decision_and_fill(samples: list[tuple[int, list[int]]],
                                                                name: str) -> None:
    method = parse_method(name)
    out = cell_flops(records(*samples), method, TABLE)
    assert out["executed"] == sum(s["executed"] for s in out["per_sample"]) == (
        out["prompt"]["executed"] + out["decode"]["executed"])
    assert out["full"] == sum(full_sample(prompt, len(trace)) for prompt, trace in samples)
    decode = 0
    for prompt, trace in samples:
        for k, ran in enumerate(trace[1:], start=1):
            decode += ran * step(prompt + k - 1) + HEAD
            if method.kind == "ee":
                stateful = method.exit_kind == "mamba"
                decode += MAMBA * len(EXITS) if stateful else CALM * sum(e <= ran for e in EXITS)
                decode += (L - ran) * (PARTIAL if method.policy == "partial" else 0)
    assert out["decode"]["executed"] == decode
    assert out["decode"]["tokens"] == sum(len(trace) - 1 for _, trace in samples)
    if out["decode"]["tokens"]:
        assert out["per_token_executed"] == decode / out["decode"]["tokens"]


def test_sample_work_counts_each_block_per_phase() -> None:
    work = sample_work(10, [L, 5, L], parse_method("ee-calm-partial-t0.9"), TABLE)
    assert work.prompt == Counter({("layer_prefill", 10): L, ("head", None): 1})
    assert work.decode == Counter({("layer_decode", 10): 5, ("layer_decode", 11): L, ("head", None): 2,
                                   ("decision", None): 2 + 4, ("fill", None): 3})
    assert work.totals() == Counter({"layer_prefill": L, "head": 3, "layer_decode": 5 + L, "decision": 6, "fill": 3})
    assert sample_work(10, [6, 6], parse_method("prune2"), TABLE).prompt[("layer_prefill", 10)] == 6


def test_length_models_reproduce_the_forms_exactly_and_round_trip() -> None:
    cubic = fit_length_model(lambda t: 7 + 3 * t + 5 * t * t + t**3, "polynomial", degree=3, around=50)
    assert cubic.exact and cubic.max_relative_error == 0.0 and cubic(1000) == 7 + 3000 + 5_000_000 + 10**9
    assert cubic.coefficients == (7, 3, 5, 1) and 50 in dict(cubic.counts)
    chunked = fit_length_model(lambda t: 11 + 2 * t + 3 * -(-t // 8) + 4 * (-(-t // 8)) ** 2, "chunked", chunk=8,
                               around=30)
    assert chunked.exact and [chunked(t) for t in (1, 8, 9, 100)] == [20, 34, 51, 11 + 200 + 39 + 676]
    assert LengthModel.from_dict(chunked.to_dict()) == chunked
    rough = fit_length_model(lambda t: t * t + (t % 3), "polynomial", degree=1, around=20)
    assert not rough.exact and rough.max_relative_error > 0
    assert rough.max_relative_error == max(abs(rough(t) - (t * t + t % 3)) / (t * t + t % 3)
                                           for t in default_lengths("polynomial", 1, None, 20)[1])


def test_length_models_refuse_lengths_they_cannot_price() -> None:
    model = fit_length_model(lambda t: 2 * t, "polynomial", degree=1, around=9, valid_below=100)
    assert model(99) == 198
    with pytest.raises(ValueError, match="length 100 is past 100"):
        model(100)
    with pytest.raises(ValueError, match="length must be >= 1, got 0"):
        model(0)
    with pytest.raises(ValueError, match="use one of"):
        fit_length_model(lambda t: t, "chunked", around=9)
    with pytest.raises(ValueError, match=r"^the fit lengths do not determine the length model \(singular system\); "
                                         "pick other lengths$"):
        fit_length_model(lambda t: t, "polynomial", degree=1, around=9, lengths=([4, 4], [5]))
    with pytest.raises(ValueError, match="past 20, where this block's cost changes form"):  # a check at 30 is past it
        fit_length_model(lambda t: 2 * t, "polynomial", degree=1, around=30, valid_below=20)


def test_extend_models_price_verification_passes_and_round_trip() -> None:
    """The extend form, (t cached, m new) -> a + b m + c m t + d m^2: self-speculative verification."""
    def count(length: tuple[int, int]) -> int:
        cached, new = length
        return 7 + 3 * new + 5 * new * cached + 2 * new * new

    model = fit_length_model(count, "extend", around=30, valid_below=64)
    assert model.coefficients == (7, 3, 5, 2) and model.exact and model.max_relative_error == 0.0
    assert [model(t) for t in ((0, 1), (5, 1), (10, 3))] == [count((0, 1)), count((5, 1)), count((10, 3))]
    assert (30, 9) in dict(model.counts)  # checked at the reference length
    assert LengthModel.from_dict(model.to_dict()) == model
    assert set(model.to_dict()["counts"]) == {"8,2", "8,3", "16,2", "16,4", "24,2", "40,5", "30,2", "30,9"}
    with pytest.raises(ValueError, match=r"^length 64 is past 64, where this block's cost changes form \(a sliding "
                                         r"window\); the flops rule has no count there: shorten the prompts or extend "
                                         r"dynamax_bench/costs/lengths.py$"):  # cached + new positions
        model((60, 4))
    for bad in ((-1, 2), (3, 0)):
        with pytest.raises(ValueError, match=rf"^length model: an extend length \(t, m\) needs t >= 0 cached and m >= 1 "
                                             rf"new, got \({bad[0]}, {bad[1]}\)$"):
            model(bad)
    with pytest.raises(ValueError, match=r"^length model of form 'extend': a length \(t, m\) goes with the extend form"):
        model(12)
    with pytest.raises(ValueError, match="goes with the extend form only"):
        fit_length_model(lambda t: t, "polynomial", degree=1, around=9)((4, 2))


def test_length_models_keep_every_field_through_their_file() -> None:
    rough = fit_length_model(lambda t: t**3 + (t % 5), "polynomial", degree=3, around=20, valid_below=90)
    assert not rough.exact and rough.max_relative_error > 0 and rough.degree == 3 and rough.valid_below == 90
    assert LengthModel.from_dict(rough.to_dict()) == rough
    quadratic = fit_length_model(lambda t: 1 + t * t, "polynomial", around=20)  # degree 2 unless asked
    assert quadratic.coefficients == (1, 0, 1)
    unchecked = fit_length_model(lambda t: 4 * t, "polynomial", degree=1, around=8, lengths=([8, 16], []))
    assert unchecked.exact and unchecked.max_relative_error == 0.0  # nothing checked: no error measured


def test_chunked_models_fit_small_chunks() -> None:
    """A chunk of 2 or 3 puts the half-chunk fit length at 1 (not 2, which would repeat a fit length)."""
    assert default_lengths("chunked", 2, 2, 24) == ([1, 2, 3, 5], [7, 24])
    model = fit_length_model(lambda t: 11 + 2 * t + 3 * -(-t // 2) + 5 * (-(-t // 2)) ** 2, "chunked", chunk=2,
                             around=24)
    assert model.coefficients == (11, 2, 3, 5) and model.exact


def test_default_lengths_fit_distinct_points_and_check_at_the_reference_length() -> None:
    assert default_lengths("extend", 2, None, 30) == ([(8, 2), (8, 3), (16, 2), (16, 4)],
                                                      [(24, 2), (40, 5), (30, 2), (30, 9)])
    assert default_lengths("polynomial", 2, None, 16) == ([8, 16, 24], [28, 40])
    assert default_lengths("polynomial", 2, None, 50) == ([8, 16, 24], [28, 40, 50])
    assert default_lengths("chunked", 2, 256, 24) == ([128, 256, 257, 640], [24, 129, 769])


VERIFY = LengthModel("extend", (Fraction(0), Fraction(300), Fraction(1), Fraction(0))).to_dict()  # 300 m + m t
DRAFT = 3  # spec-e3-k2: layers 1-3 draft, layers 4-8 verify


def verify_pass(cached: int, new: int) -> int:
    return 300 * new + new * cached


def spec_record() -> dict:
    """Three rounds from a 10-token prompt: 2 drafted and 1 accepted, 2 drafted and none accepted, and a
    last round with no draft left in the budget; 1 + 2 + 1 + 1 = 5 tokens."""
    return {"id": "s0", "prompt_tokens": 10, "layers_executed": [L] * 5,
            "speculation": {"drafted": [2, 2, 0], "accepted": [1, 0, 0]}}


@pytest.mark.parametrize("family", ["transformer", "mamba2"])
def test_self_speculation_pays_for_every_draft_and_verification_rejected_ones_included(family: str) -> None:
    table = {**TABLE, "family": family, "blocks": {**TABLE["blocks"], "layer_verify": {"flops": 0, "per_length": VERIFY}}}
    out = cell_flops([spec_record()], parse_method(f"spec-e{DRAFT}-k2"), table)
    drafts = DRAFT * (step(10) + step(11) + step(12) + step(12) + step(13) + step(14) + step(13))  # from 10, 12, 13
    upper = L - DRAFT
    if family == "transformer":  # one pass of the upper layers over the m = d + 1 positions; m = 1 is a step
        verified = upper * (verify_pass(10, 3) + verify_pass(12, 3) + step(13))
    else:  # a recurrent layer verifies position by position: every position runs every layer
        verified = upper * (step(10) + step(11) + step(12) + step(12) + step(13) + step(14) + step(13))
    heads = HEAD * ((2 + 3) + (2 + 3) + (0 + 1))  # the drafts' heads, then one per verified position
    full_decode = L * (step(10) + step(11) + step(12) + step(13)) + 4 * HEAD
    assert out["decode"] == {"executed": drafts + verified + heads, "full": full_decode, "tokens": 4}
    assert out["decode_savings"] == pytest.approx(1 - (drafts + verified + heads) / full_decode)
    assert out["prompt"]["executed"] == out["prompt"]["full"] == L * prefill(10) + HEAD
    if family == "transformer":  # one draft: the upper layers verify m = 2 positions in one pass
        one = {**spec_record(), "layers_executed": [L] * 3, "speculation": {"drafted": [1], "accepted": [1]}}
        decode = cell_flops([one], parse_method(f"spec-e{DRAFT}-k2"), table)["decode"]["executed"]
        assert decode == DRAFT * (step(10) + step(11)) + upper * verify_pass(10, 2) + HEAD * (1 + 2)


def test_self_speculation_needs_its_rounds_and_a_verification_count() -> None:
    table = {**TABLE, "family": "transformer", "blocks": {**TABLE["blocks"], "layer_verify": {"flops": 0, "per_length": VERIFY}}}
    stale = {key: value for key, value in spec_record().items() if key != "speculation"}
    with pytest.raises(ValueError, match=r"^generation record 's0' of a spec-\* method has no 'speculation' rounds; "
                                         r"rerun the generate rule for this cell$"):
        cell_flops([stale], parse_method("spec-e3-k2"), table)
    with pytest.raises(ValueError, match=r"^generation record '\?' of a spec-\* method"):  # a record without its id
        cell_flops([{k: v for k, v in stale.items() if k != "id"}], parse_method("spec-e3-k2"), table)
    without = {**table, "blocks": {k: v for k, v in table["blocks"].items() if k != "layer_verify"}}
    with pytest.raises(ValueError, match=r"^the FLOPs table has no `layer_verify` count \(a layer over several new "
                                         r"positions, which self-speculative verification runs\); rerun the flops "
                                         r"rule for this backbone$"):
        cell_flops([spec_record()], parse_method("spec-e3-k2"), without)
    assert cell_flops([spec_record()], parse_method("spec-e3-k2"), {**without, "family": "mamba2"})["decode"]["tokens"] == 4


def test_an_uncertified_target_is_counted_as_full_and_the_ledger_says_how_it_counted() -> None:
    import dataclasses

    from dynamax_bench.costs.ledger import ACCOUNTING

    uncertified = dataclasses.replace(parse_method("ee-calm-copy-c0.95"), threshold=None, certified=False)
    out = cell_flops(records((10, [L, L, L])), uncertified, TABLE)
    assert out["executed"] == out["full"] == full_sample(10, 3) and out["decode_savings"] == 0.0
    assert (out["unit"], out["accounting"], out["exact"], out["context_length"]) == ("test", ACCOUNTING, True, 16)
    with pytest.raises(ValueError, match=r"^full: no generated tokens to count$"):
        cell_flops(records((10, []), (12, [])), parse_method("full"), TABLE)


def test_stale_inputs_are_named_in_full() -> None:
    with pytest.raises(ValueError) as err:
        cell_flops([{"layers_executed": [L]}], parse_method("full"), TABLE)
    assert str(err.value) == ("generation record '?' has no 'prompt_tokens': it predates the complete cost ledger; "
                              "rerun the generate rule for this cell")
    stale = {**TABLE, "blocks": {**TABLE["blocks"], "layer_prefill": {"flops": 1}}}
    with pytest.raises(ValueError) as err:
        cell_flops(records((10, [L])), parse_method("full"), stale)
    assert str(err.value) == ("the FLOPs table has no per-length counts (it predates the complete cost ledger); "
                              "rerun the flops rule for this backbone")
