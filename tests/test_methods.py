from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamax_bench.generation.strategy import check_method_for
from dynamax_bench.spec import METHOD_PATTERN, baseline_methods, ee_name, parse_method


def test_parse_every_form() -> None:
    assert parse_method("full").kind == "full"
    assert parse_method("oracle").kind == "oracle"
    assert parse_method("prune6").prune == 6
    ee = parse_method("ee-mamba-copy-t0.9")
    assert (ee.kind, ee.exit_kind, ee.policy, ee.threshold) == ("ee", "mamba", "copy", 0.9)
    assert ee_name("calm", "skip", 0.8) == "ee-calm-skip-t0.8"


@pytest.mark.parametrize("name", ["fast", "prune", "ee-mamba-copy", "ee-mamba-copy-t1.5", "prune-1"])
def test_unknown_method_lists_the_forms(name: str) -> None:
    with pytest.raises(ValueError, match="prune<N>|threshold"):
        parse_method(name)


def test_policy_and_depth_must_fit_the_backbone() -> None:
    with pytest.raises(ValueError, match="does not apply to a transformer"):
        check_method_for(parse_method("ee-calm-skip-t0.5"), "transformer")
    with pytest.raises(ValueError, match="cannot drop 30 of 30"):
        check_method_for(parse_method("prune30"), "transformer", 30)


def test_baselines_are_ordered() -> None:
    assert baseline_methods({"prune": [6, 1]}) == ["full", "prune1", "prune6", "oracle"]


@pytest.mark.parametrize(("threshold", "text"), [
    (0.9, "0.9"), (0.5, "0.5"), (1.0, "1"), (0, "0"), (0.0, "0"), (-0.0, "0"),
    (0.123456789, "0.123456789"), (1e-05, "0.00001"), (0.95, "0.95"), (1e-16, "0.0000000000000001"),
])
def test_a_threshold_is_written_in_its_shortest_positional_form(threshold: float, text: str) -> None:
    name = ee_name("calm", "copy", threshold)
    assert name == f"ee-calm-copy-t{text}"
    assert parse_method(name).threshold == threshold


@given(st.floats(min_value=0.0, max_value=1.0, allow_nan=False))
def test_every_threshold_the_schema_allows_survives_its_name(threshold: float) -> None:
    """The schema allows any number in [0, 1]: its name matches the method pattern and reads back
    as the same float (a rounded name would make two thresholds one file, or a file of another)."""
    name = ee_name("mamba", "partial", threshold)
    assert re.fullmatch(METHOD_PATTERN, name)
    assert parse_method(name).threshold == threshold
