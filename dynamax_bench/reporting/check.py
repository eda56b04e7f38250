"""Regression check: compare a run's cells with `reference/<profile>.json` within their tolerances.

Every field the reference holds is checked; a run cell or field the reference does not hold is
listed as unchecked, never failed (a reference may be partial, e.g. reference/paper_reported.json).
The generated tokens are gated by their hash on the reference's platform; where a cell's tokens
equal the reference's, every number of it must too; otherwise numbers must stay within the
intervals derived from the sample count (dynamax_bench/reporting/tolerances.py).

    python -m dynamax_bench.reporting.check results/ci reference/ci.json            # check
    python -m dynamax_bench.reporting.check results/ci reference/ci.json --regenerate --reason "..."

Exit status: 0 every checked field passes; 1 a field is outside its tolerance (a regression);
2 the check cannot run (no run, a missing or malformed reference, a refused --regenerate).
"""

from __future__ import annotations

import argparse
import fnmatch
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dynamax_bench.files import atomic_path, read_json, write_json
from dynamax_bench.reporting.reference import (
    HASH_FIELD,
    ReferenceError,
    build_reference,
    load_reference,
    numeric_fields,
    platform_of,
    read_latency,
    run_cells,
    token_hash,
)

SAME_TOKENS_TOL = 1e-9


@dataclass(frozen=True)
class RunCell:
    """What a check reads of one cell: its numbers, its token hash, and the platform that made it."""

    fields: dict[str, float | str]
    platform: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    cell: str
    path: str
    value: float | str | None
    reference: float | str | None
    tolerance: str
    status: str  # pass | FAIL | unchecked

    @property
    def passed(self) -> bool:
        return self.status != "FAIL"


def read_cells(results_dir: str | Path) -> dict[str, RunCell]:
    """Every cell of a run, with the hash of its generations file where there is one."""
    results_dir = Path(results_dir)
    cells = {}
    for key, path in run_cells(results_dir).items():
        cell = read_json(path)
        fields: dict[str, float | str] = dict(numeric_fields(cell))
        generations = results_dir / "generations" / f"{key}.jsonl"
        if generations.exists():
            from dynamax_bench.generation.generate import read_generations

            fields[HASH_FIELD] = token_hash(read_generations(generations)[1])
        cells[key] = RunCell(fields, platform_of(cell) if "spec" in cell and "provenance" in cell else {})
    return cells


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


def status(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def _platform_text(platform: dict) -> str:
    return "/".join(str(platform.get(k, "?")) for k in ("device", "dtype", "torch"))


def compare_field(cell: str, path: str, expected, value, rules: list[dict], same_tokens: bool) -> Comparison:
    """One reference field against the run's value."""
    reference = expected["value"] if isinstance(expected, dict) else expected
    if value is None:
        return Comparison(cell, path, None, reference, "-", "FAIL")
    if same_tokens:
        ok = math.isclose(value, reference, rel_tol=SAME_TOKENS_TOL, abs_tol=SAME_TOKENS_TOL)
        return Comparison(cell, path, value, reference, "same tokens: exact", status(ok))
    if isinstance(expected, dict):
        ok = expected["low"] <= value <= expected["high"]
        return Comparison(cell, path, value, reference,
                          f"[{expected['low']:.4g}, {expected['high']:.4g}] {expected['rule']}", status(ok))
    rule = tolerance_for(path, rules)
    return Comparison(cell, path, value, reference, describe(rule), status(within(value, reference, rule)))


def tokens_match(cells: dict[str, RunCell], reference: dict, cell: str) -> bool:
    expected = reference["cells"].get(cell, {}).get(HASH_FIELD)
    return expected is not None and cell in cells and cells[cell].fields.get(HASH_FIELD) == expected


def compare_cell(cell: str, expected: dict, run: RunCell, reference: dict, check_tokens: bool,
                 same_tokens: bool) -> list[Comparison]:
    """same_tokens: this cell's tokens and its full model's (consistency reads both) are the reference's."""
    rows = []
    run_hash = run.fields.get(HASH_FIELD)
    platform = reference.get("platform")
    for path, wanted in sorted(expected.items()):
        if path == HASH_FIELD:
            if not check_tokens:
                rows.append(Comparison(cell, path, run_hash, wanted, "not gated (--no-tokens)", "unchecked"))
            elif platform is None or run.platform != platform or platform.get("device") != "cpu":
                rows.append(Comparison(cell, path, run_hash, wanted,
                                       f"not gated: tokens are gated on the reference's platform "
                                       f"({_platform_text(platform or {})}), this run is {_platform_text(run.platform)}",
                                       "unchecked"))
            else:
                rows.append(Comparison(cell, path, run_hash, wanted, f"exact on {_platform_text(platform)}",
                                       status(run_hash == wanted)))
            continue
        rows.append(compare_field(cell, path, wanted, run.fields.get(path), reference["tolerances"], same_tokens))
    return rows


def compare(cells: dict[str, RunCell], reference: dict, latency: dict | None = None,
            check_tokens: bool = True) -> list[Comparison]:
    """Every field the reference holds against the run; cells only in the run are unchecked."""
    rows: list[Comparison] = []
    for cell, expected in sorted(reference["cells"].items()):
        if cell not in cells:
            rows.append(Comparison(cell, "(cell)", None, None, "in the reference, not in the run", "FAIL"))
            continue
        full = cell.rsplit("/", 1)[0] + "/full"
        same_tokens = tokens_match(cells, reference, cell) and tokens_match(cells, reference, full)
        rows.extend(compare_cell(cell, expected, cells[cell], reference, check_tokens, same_tokens))
    for cell in sorted(set(cells) - set(reference["cells"])):
        rows.append(Comparison(cell, "(cell)", None, None, "not in the reference", "unchecked"))
    expected_latency = reference.get("latency") or {}
    if not expected_latency:
        rows.append(Comparison("latency", "(all)", None, None,
                               "not gated: the reference holds no latency values", "unchecked"))
    for key, fields in sorted(expected_latency.items()):
        measured = (latency or {}).get(key, {})
        for path, wanted in sorted(fields.items()):
            rows.append(compare_field(f"latency/{key}", path, wanted, measured.get(path), reference["tolerances"], False))
    return rows


def unchecked_fields(cells: dict[str, RunCell], reference: dict) -> list[str]:
    """Field paths of checked cells that the reference does not hold."""
    return sorted({path for cell, expected in reference["cells"].items() if cell in cells
                   for path in cells[cell].fields if path not in expected})


def format_table(rows: list[Comparison], unchecked: list[str] | None = None) -> str:
    def shown(x: float | str | None, result: str) -> str:
        if x is None:
            return "missing" if result == "FAIL" else "-"
        return x if isinstance(x, str) else f"{x:.6g}"

    header = ("cell", "field", "value", "reference", "tolerance", "result")
    body = [(r.cell, r.path, shown(r.value, r.status), shown(r.reference, r.status), r.tolerance, r.status)
            for r in rows]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip() for line in [header, *body]]
    checked = [r for r in rows if r.status != "unchecked"]
    failed = sum(r.status == "FAIL" for r in rows)
    if unchecked:
        lines.append(f"unchecked fields (not in the reference): {', '.join(unchecked)}")
    lines.append(f"check: {len(checked) - failed} of {len(checked)} fields within tolerance, {failed} outside, "
                 f"{len(rows) - len(checked)} unchecked")
    return "\n".join(lines)


def run_check(results_dir: str | Path, reference_path: str | Path, check_tokens: bool = True) -> tuple[list[Comparison], str]:
    """Rows and printed table of one check (raises ReferenceError / FileNotFoundError when it cannot run)."""
    reference = load_reference(reference_path)
    cells = read_cells(results_dir)
    rows = compare(cells, reference, read_latency(results_dir), check_tokens)
    return rows, format_table(rows, unchecked_fields(cells, reference))


def check_run(results_dir: str | Path, reference_path: str | Path, report_path: str | Path) -> bool:
    """The `check` rule: log and write the comparison table; True when no field fails."""
    rows, table = run_check(results_dir, reference_path)
    logging.getLogger(__name__).info("comparison with %s:\n%s", reference_path, table)
    with atomic_path(report_path) as tmp:
        tmp.write_text(table + "\n", encoding="utf-8")
    return all(r.passed for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dynamax_bench.reporting.check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="a profile's results folder, e.g. results/ci")
    parser.add_argument("reference", help="reference file, e.g. reference/ci.json")
    parser.add_argument("--regenerate", action="store_true", help="write the reference from this run")
    parser.add_argument("--reason", default="", help="why the reference changes (recorded in the file)")
    parser.add_argument("--merge", action="store_true",
                        help="with --regenerate: replace only the run's cells, keep the reference's others")
    parser.add_argument("--with-latency", action="store_true",
                        help="with --regenerate: also record the run's latency medians (machine-specific)")
    parser.add_argument("--no-tokens", action="store_true",
                        help="do not gate the token hashes (another CPU's kernels may round differently); "
                             "quality is still gated by the derived intervals")
    parser.add_argument("--report", help="also write the comparison table to this file")
    args = parser.parse_args(argv)
    if args.regenerate and not args.reason:
        parser.error("--regenerate needs --reason: say why the reference values change")
    try:
        if args.regenerate:
            reference = build_reference(args.results, args.reference, args.reason, merge=args.merge,
                                        with_latency=args.with_latency)
            write_json(args.reference, reference)
            print(f"wrote {args.reference}: {len(reference['cells'])} cells")
            return 0
        rows, table = run_check(args.results, args.reference, check_tokens=not args.no_tokens)
    except (ReferenceError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(table)
    if args.report:
        with atomic_path(args.report) as tmp:
            tmp.write_text(table + "\n", encoding="utf-8")
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
