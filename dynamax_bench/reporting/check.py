"""Regression check: compare a run's cell files with `reference/<profile>.json` within tolerances.

A reference holds, per cell (`<backbone>/<task>/<method>`), the expected value of every numeric
field of the cell (dotted paths such as `metrics.em`), and a list of tolerance rules matched by
path pattern: `absolute` (|value - reference| <= tol), `relative` (|value - reference| <= tol *
|reference|) or `exact`. The first rule whose pattern matches a path applies.

    python -m dynamax_bench.reporting.check results/smoke reference/smoke.json            # check
    python -m dynamax_bench.reporting.check results/smoke reference/smoke.json --regenerate --reason "..."
"""

from __future__ import annotations

import argparse
import datetime as _dt
import fnmatch
import getpass
import logging
import math
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from dynamax_bench.config import REPO_ROOT
from dynamax_bench.files import atomic_path, read_json, write_json
from dynamax_bench.provenance import git_commit

SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "reference.schema.yaml"
SKIPPED_ROOTS = ("provenance", "spec", "task_spec")  # how a cell was made, not what it measured
DEFAULT_TOLERANCES = [
    {"pattern": "metrics.*", "kind": "absolute", "tol": 0.02},
    {"pattern": "consistency.*", "kind": "absolute", "tol": 0.02},
    {"pattern": "latency.*", "kind": "relative", "tol": 0.5},
    {"pattern": "flops.*", "kind": "exact"},
    {"pattern": "*", "kind": "absolute", "tol": 1e-6},
]


class ReferenceError(ValueError):
    """A reference file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Comparison:
    cell: str
    path: str
    value: float | None
    reference: float | None
    tolerance: str
    passed: bool


def numeric_fields(cell: dict, prefix: str = "") -> dict[str, float]:
    """Dotted path -> number for every numeric leaf of a cell (provenance excluded)."""
    fields: dict[str, float] = {}
    for key, value in cell.items():
        path = f"{prefix}{key}"
        if not prefix and key in SKIPPED_ROOTS:
            continue
        if isinstance(value, dict):
            fields.update(numeric_fields(value, f"{path}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            fields[path] = float(value)
    return fields


def cell_key(path: Path, cells_dir: Path) -> str:
    return path.relative_to(cells_dir).with_suffix("").as_posix()


def read_cells(results_dir: str | Path) -> dict[str, dict[str, float]]:
    cells_dir = Path(results_dir) / "cells"
    if not cells_dir.is_dir():
        raise FileNotFoundError(f"no cells under {cells_dir}; run the profile first (snakemake paper_tables/)")
    return {cell_key(p, cells_dir): numeric_fields(read_json(p)) for p in sorted(cells_dir.rglob("*.json"))}


def load_reference(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ReferenceError(f"reference file {path} not found; create it with --regenerate from a trusted run")
    reference = read_json(path)
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(reference), key=lambda e: list(e.path))
    if errors:
        where = ".".join(map(str, errors[0].absolute_path)) or "<top>"
        raise ReferenceError(f"{path}: invalid reference at '{where}': {errors[0].message}")
    if "sources" in reference:
        unsourced = [f"{cell}:{field}" for cell, fields in reference["cells"].items() for field in fields
                     if f"{cell}:{field}" not in reference["sources"]]
        if unsourced:
            raise ReferenceError(f"{path}: values without a source (table and row of the paper): {unsourced[:5]}")
    return reference


def tolerance_for(path: str, rules: list[dict]) -> dict:
    for rule in rules:
        if fnmatch.fnmatchcase(path, rule["pattern"]):
            return rule
    return {"pattern": "*", "kind": "exact"}


def within(value: float, expected: float, rule: dict) -> bool:
    if math.isnan(value) or math.isnan(expected):
        return math.isnan(value) and math.isnan(expected)
    if rule["kind"] == "exact":
        return value == expected
    if rule["kind"] == "absolute":
        return abs(value - expected) <= rule["tol"]
    return abs(value - expected) <= rule["tol"] * abs(expected)


def describe(rule: dict) -> str:
    return "exact" if rule["kind"] == "exact" else f"{'±' if rule['kind'] == 'absolute' else '×'}{rule['tol']:g}"


def compare(cells: dict[str, dict[str, float]], reference: dict) -> list[Comparison]:
    """Every (cell, field) of the reference against the run; missing cells or fields fail."""
    rules = reference["tolerances"]
    rows = []
    for cell, expected_fields in sorted(reference["cells"].items()):
        actual = cells.get(cell, {})
        for path, expected in sorted(expected_fields.items()):
            rule = tolerance_for(path, rules)
            value = actual.get(path)
            passed = value is not None and within(value, expected, rule)
            rows.append(Comparison(cell, path, value, expected, describe(rule), passed))
    for cell in sorted(set(cells) - set(reference["cells"])):
        rows.append(Comparison(cell, "(cell)", None, None, "not in reference", False))
    return rows


def format_table(rows: list[Comparison]) -> str:
    def number(x: float | None) -> str:
        return "missing" if x is None else f"{x:.6g}"

    header = ("cell", "field", "value", "reference", "tolerance", "result")
    body = [(r.cell, r.path, number(r.value), number(r.reference), r.tolerance, "pass" if r.passed else "FAIL")
            for r in rows]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip() for line in [header, *body]]
    failed = sum(not r.passed for r in rows)
    lines.append(f"check: {len(rows) - failed} of {len(rows)} fields within tolerance, {failed} outside")
    return "\n".join(lines)


def regenerate(results_dir: str | Path, reference_path: str | Path, reason: str) -> dict:
    """Write a reference from a run, recording who, when, from what and why."""
    old = Path(reference_path)
    tolerances = load_reference(old)["tolerances"] if old.exists() else DEFAULT_TOLERANCES
    cells = read_cells(results_dir)
    any_cell = next(iter(sorted(Path(results_dir, "cells").rglob("*.json"))))
    provenance = read_json(any_cell)["provenance"]
    reference = {
        "profile": provenance["profile"],
        "generated": {
            "by": f"{getpass.getuser()}@{socket.gethostname()}",
            "at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            "from": str(results_dir),
            "git_commit": git_commit(),
            "spec_hash": provenance["spec_hash"],
            "reason": reason,
        },
        "tolerances": tolerances,
        "cells": cells,
    }
    write_json(reference_path, reference)
    return reference


def check_run(results_dir: str | Path, reference_path: str | Path, report_path: str | Path) -> bool:
    """The `check` rule: print and write the comparison table; True when every field passes."""
    rows = compare(read_cells(results_dir), load_reference(reference_path))
    table = format_table(rows)
    logging.getLogger(__name__).info("comparison with %s:\n%s", reference_path, table)
    with atomic_path(report_path) as tmp:
        tmp.write_text(table + "\n", encoding="utf-8")
    return all(r.passed for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dynamax_bench.reporting.check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="a profile's results folder, e.g. results/smoke")
    parser.add_argument("reference", help="reference file, e.g. reference/smoke.json")
    parser.add_argument("--regenerate", action="store_true", help="overwrite the reference from this run")
    parser.add_argument("--reason", default="", help="why the reference changes (recorded in the file)")
    parser.add_argument("--report", help="also write the comparison table to this file")
    args = parser.parse_args(argv)
    if args.regenerate:
        if not args.reason:
            parser.error("--regenerate needs --reason: say why the reference values change")
        reference = regenerate(args.results, args.reference, args.reason)
        print(f"wrote {args.reference}: {len(reference['cells'])} cells")
        return 0
    try:
        reference = load_reference(args.reference)
        rows = compare(read_cells(args.results), reference)
    except (ReferenceError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = format_table(rows)
    print(table)
    if args.report:
        with atomic_path(args.report) as tmp:
            tmp.write_text(table + "\n", encoding="utf-8")
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
