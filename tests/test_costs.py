"""Savings from exit traces: full saves nothing, decisions cost, exits save what the block table says."""

from __future__ import annotations

import pytest

from dynamax_bench.costs.ledger import cell_flops
from dynamax_bench.spec import parse_method

L, LAYER, HEAD, CALM, MAMBA, PARTIAL = 8, 1000, 500, 10, 40, 100
TABLE = {
    "num_layers": L,
    "exit_positions": [4, 5, 6, 7],
    "context_length": 16,
    "unit": "test",
    "blocks": {"layer_decode": {"flops": LAYER}, "head": {"flops": HEAD}, "fill_partial": {"flops": PARTIAL},
               "fill_copy": {"flops": 0}, "fill_skip": {"flops": 0}},
    "exit_methods": {"calm": {"flops": CALM}, "mamba": {"flops": MAMBA}},
}
FULL_TOKEN = L * LAYER + HEAD


def records(*traces: list[int]) -> list[dict]:
    return [{"exit_layers": list(t)} for t in traces]


def test_full_saves_exactly_nothing() -> None:
    assert cell_flops(records([L, L, L], [L]), parse_method("full"), TABLE)["savings"] == 0.0


def test_all_layers_on_every_token_costs_the_classifier_overhead() -> None:
    out = cell_flops(records([L, L, L]), parse_method("ee-calm-copy-t0.9"), TABLE)
    overhead = 2 * 4 * CALM  # two decode tokens, four decisions each; the prompt's token takes none
    assert out["savings"] == pytest.approx(-overhead / (3 * FULL_TOKEN))
    assert out["savings"] < 0


def test_exiting_at_layer_e_saves_what_the_blocks_predict() -> None:
    e = 5
    out = cell_flops(records([L] + [e] * 9), parse_method("ee-calm-partial-t0.9"), TABLE)
    token = e * LAYER + HEAD + 2 * CALM + (L - e) * PARTIAL  # decisions at exits 4 and 5, fill of 3 layers
    expected = 1 - (FULL_TOKEN + 9 * token) / (10 * FULL_TOKEN)
    assert out["savings"] == pytest.approx(expected)
    assert out["per_token_executed"] == pytest.approx((FULL_TOKEN + 9 * token) / 10)


def test_stateful_classifier_steps_at_every_exit_and_oracle_is_free() -> None:
    mamba = cell_flops(records([L, 4]), parse_method("ee-mamba-skip-t0.9"), TABLE)
    assert mamba["per_token_executed"] == pytest.approx((FULL_TOKEN + 4 * LAYER + HEAD + 4 * MAMBA) / 2)
    oracle = cell_flops(records([L, 4]), parse_method("oracle"), TABLE)
    assert oracle["per_token_executed"] == pytest.approx((FULL_TOKEN + 4 * LAYER + HEAD) / 2)


def test_pruning_counts_the_kept_layers() -> None:
    assert cell_flops(records([6, 6]), parse_method("prune2"), TABLE)["savings"] == pytest.approx(1 - (6 * LAYER + HEAD) / FULL_TOKEN)
