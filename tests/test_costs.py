"""The ledger's prices: the prompt and every decode step, decisions and fills, at their lengths.

(`test_ledger_calls.py` checks the counts against the engine's real calls; these tests check
how counts become FLOPs, on a table with round numbers.)
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from dynamax_bench.costs.ledger import cell_flops
from dynamax_bench.costs.lengths import LengthModel
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
    assert out["per_sample"] == [{"executed": full_sample(10, 3), "full": full_sample(10, 3)},
                                 {"executed": full_sample(20, 1), "full": full_sample(20, 1)}]
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
