"""The regression check: passes on its own run, fails readably on a moved value, rejects bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dynamax_bench.reporting.check import ReferenceError, compare, format_table, load_reference, main, numeric_fields
from dynamax_bench.files import write_json

CELL = {
    "backbone": "b", "task": "t", "method": "full",
    "metrics": {"em": 0.5, "f1": 0.6},
    "consistency": {"output_match": 1.0},
    "latency": {"ms_per_token": 20.0},
    "flops": {"per_token": 1000},
    "n_samples": 4,
    "provenance": {"profile": "smoke", "spec_hash": "abc", "versions": {"torch": "2.13"}},
}


def make_run(root: Path, cell: dict) -> Path:
    write_json(root / "cells" / "b" / "t" / "full.json", cell)
    return root


def test_numeric_fields_skip_provenance() -> None:
    fields = numeric_fields(CELL)
    assert fields["metrics.em"] == 0.5 and fields["flops.per_token"] == 1000.0
    assert not any(k.startswith("provenance") for k in fields)


def test_regenerated_reference_passes(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path / "run", CELL)
    ref = tmp_path / "ref.json"
    assert main([str(run), str(ref), "--regenerate", "--reason", "test"]) == 0
    generated = json.loads(ref.read_text())["generated"]
    assert generated["reason"] == "test" and generated["by"] and generated["at"]
    assert main([str(run), str(ref)]) == 0
    assert "6 of 6 fields within tolerance" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("path", "moved", "ok"),
    [
        (("metrics", "em"), 0.51, True),  # within ±0.02
        (("metrics", "em"), 0.55, False),
        (("latency", "ms_per_token"), 29.0, True),  # within ×0.5
        (("latency", "ms_per_token"), 31.0, False),
        (("flops", "per_token"), 1001, False),  # exact
    ],
)
def test_tolerance_kinds(tmp_path: Path, path: tuple[str, str], moved: float, ok: bool, capsys) -> None:
    ref = tmp_path / "ref.json"
    main([str(make_run(tmp_path / "a", CELL)), str(ref), "--regenerate", "--reason", "base"])
    changed = json.loads(json.dumps(CELL))
    changed[path[0]][path[1]] = moved
    code = main([str(make_run(tmp_path / "b", changed)), str(ref)])
    out = capsys.readouterr().out
    assert code == (0 if ok else 1)
    if not ok:
        assert f"b/t/full  {'.'.join(path)}" in out and "FAIL" in out


def test_missing_cell_fails(tmp_path: Path) -> None:
    ref = tmp_path / "ref.json"
    main([str(make_run(tmp_path / "a", CELL)), str(ref), "--regenerate", "--reason", "base"])
    rows = compare({}, load_reference(ref))
    assert rows and not any(r.passed for r in rows)
    assert "missing" in format_table(rows)


def test_malformed_reference_is_rejected(tmp_path: Path) -> None:
    ref = tmp_path / "ref.json"
    main([str(make_run(tmp_path / "a", CELL)), str(ref), "--regenerate", "--reason", "base"])
    data = json.loads(ref.read_text())
    data["tolerances"][0]["kind"] = "roughly"
    ref.write_text(json.dumps(data))
    with pytest.raises(ReferenceError, match=r"invalid reference at 'tolerances.0.kind'"):
        load_reference(ref)
    assert main([str(tmp_path / "a"), str(ref)]) == 2


def test_paper_reported_values_file_is_valid_and_every_value_has_a_source() -> None:
    from dynamax_bench.config import REPO_ROOT

    reference = load_reference(REPO_ROOT / "reference" / "paper_reported.json")
    assert reference["profile"] == "paper"
    for cell, fields in reference["cells"].items():
        for field in fields:
            assert reference["sources"][f"{cell}:{field}"]


def test_a_value_without_its_source_is_rejected(tmp_path: Path) -> None:
    from dynamax_bench.config import REPO_ROOT

    reference = json.loads((REPO_ROOT / "reference" / "paper_reported.json").read_text())
    reference["cells"] = {"b/t/full": {"metrics.em": 0.5}}
    write_json(tmp_path / "ref.json", reference)
    with pytest.raises(ReferenceError, match="without a source"):
        load_reference(tmp_path / "ref.json")
