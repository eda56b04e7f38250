"""Regression check: compare a run's cells with `reference/<profile>.json`, each field by the rule its
inputs allow, and name that rule in the report.

Every field the reference holds is checked; a run cell or field the reference does not hold is
listed as unchecked, never failed (a reference may be partial, e.g. reference/paper_reported.json).
The rules, strictest first (docs/regression-gate.md):

- hash: the generated tokens and exit layers must hash as the reference's, on the reference's
  platform, while the artefacts the cell is made from (backbone and classifier weights, task
  samples: dynamax_bench/artefacts.py) are the reference's;
- same inputs: a number whose inputs (its cell's tokens, exits, task samples, the full model's tokens)
  equal the reference's must equal it, on every platform and whatever was rebuilt upstream;
- interval: otherwise a number must stay within the interval derived from the sample count
  (dynamax_bench/reporting/tolerances.py); plain numbers of older references take the profile's
  pattern rules. A rebuilt artefact is named once, with the number of cells it reaches: only its
  cells' hashes go ungated, and only the numbers whose inputs moved leave the exact rule.

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
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from dynamax_bench.files import atomic_path, read_json, write_json
from dynamax_bench.reporting.reference import (
    ARTEFACTS,
    EXITS_FIELD,
    HASH_FIELD,
    ReferenceError,
    build_reference,
    exits_hash,
    load_reference,
    numeric_fields,
    platform_of,
    read_latency,
    run_cells,
    token_hash,
)

SAME_INPUTS_TOL = 1e-9
GATED_HASHES = (HASH_FIELD, EXITS_FIELD)
# Artefacts a cell's generations are made from: one that differs lets its cells' hashes differ. The
# oracle store is upstream of the classifier weights: it explains a rebuilt classifier, never more.
DIRECT_ROLES = ("backbone", "classifier", "task")
WHAT_DIFFERS = {"backbone": "weights", "classifier": "weights", "oracle": "hidden states and labels",
                "task": "samples"}
# What each field is computed from (first matching pattern): it is held exact while these equal the reference's.
FIELD_INPUTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("metrics.*", ("tokens", "task")),
    ("consistency.*", ("tokens", "full tokens")),
    ("degeneration.*", ("tokens",)),
    ("n_tokens", ("tokens",)),
    ("n_samples", ("tokens",)),
    ("layers.*", ("tokens", "exits")),
    ("flops.*", ("tokens", "exits", "task")),
    ("*", ("tokens", "full tokens", "exits", "task")),
)

# The rule that judged a field (the report's `rule` column).
HASH, SAME_INPUTS, INTERVAL, PATTERN, NOT_GATED, ARTEFACT, PRESENCE = (
    "hash", "same inputs", "interval", "pattern", "not gated", "artefact", "presence")
EXACT_RULES = (HASH, SAME_INPUTS)


@dataclass(frozen=True)
class RunCell:
    """What a check reads of one cell: its numbers and generation hashes, the platform that made it,
    and the artefacts it was made from (role -> {name, sha256})."""

    fields: dict[str, float | str]
    platform: dict[str, str] = field(default_factory=dict)
    artefacts: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    cell: str
    path: str
    value: float | str | None
    reference: float | str | None
    rule: str  # which rule judged the field (HASH, SAME_INPUTS, INTERVAL, ...)
    tolerance: str  # what the rule allowed, and why this rule
    status: str  # pass | FAIL | unchecked | rebuilt

    @property
    def passed(self) -> bool:
        return self.status != "FAIL"


@dataclass(frozen=True)
class CellInputs:
    """Which inputs of a cell's numbers equal the reference's (None: the reference records none to
    compare with), and which artefacts the cell was made from differ from the reference's."""

    equal: dict[str, bool | None]
    rebuilt: tuple[str, ...] = ()  # e.g. ("mamba2 backbone",): direct artefacts whose digest differs

    def moved(self, names: tuple[str, ...]) -> list[str]:
        """Why `names` do not all hold exactly: each input that differs or that the reference lacks."""
        return [f"{name} differ" if self.equal[name] is False else f"{name} not in the reference"
                for name in names if not self.equal[name]]


def read_cells(results_dir: str | Path) -> dict[str, RunCell]:
    """Every cell of a run, with the hashes of its generations file where there is one."""
    results_dir = Path(results_dir)
    cells = {}
    for key, path in run_cells(results_dir).items():
        cell = read_json(path)
        fields: dict[str, float | str] = dict(numeric_fields(cell))
        generations = results_dir / "generations" / f"{key}.jsonl"
        if generations.exists():
            from dynamax_bench.generation.generate import read_generations

            records = read_generations(generations)[1]
            fields[HASH_FIELD], fields[EXITS_FIELD] = token_hash(records), exits_hash(records)
        cells[key] = RunCell(fields, platform_of(cell) if "spec" in cell and "provenance" in cell else {},
                             cell.get(ARTEFACTS) or {})
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


def inputs_of(path: str) -> tuple[str, ...]:
    return next(inputs for pattern, inputs in FIELD_INPUTS if fnmatch.fnmatchcase(path, pattern))


def artefact_label(role: str, record: dict[str, str]) -> str:
    return {"backbone": f"{record['name']} backbone", "classifier": f"{record['name']} classifiers",
            "oracle": f"{record['name']} oracle store", "task": f"{record['name']} task data"}[role]


def rebuilt_artefacts(expected: dict, run: RunCell, roles: tuple[str, ...] = DIRECT_ROLES) -> list[tuple[str, dict]]:
    """(role, run record) of the artefacts whose digest the reference cell holds and the run's differs from."""
    return [(role, run.artefacts[role]) for role in roles
            if f"{ARTEFACTS}.{role}" in expected and role in run.artefacts
            and run.artefacts[role]["sha256"] != expected[f"{ARTEFACTS}.{role}"]]


def cell_inputs(cell: str, cells: dict[str, RunCell], reference: dict) -> CellInputs:
    """Compare a cell's inputs with the reference's. An input the reference does not record counts as
    equal where the others allow it (strict: a check is loosened only on evidence that an input moved)."""
    expected, run = reference["cells"][cell], cells[cell]

    def same_hash(key: str, path: str) -> bool | None:
        wanted = reference["cells"].get(key, {}).get(path)
        return None if wanted is None else key in cells and cells[key].fields.get(path) == wanted

    rebuilt = tuple(artefact_label(role, record) for role, record in rebuilt_artefacts(expected, run))
    tokens = same_hash(cell, HASH_FIELD)
    # a reference without exit hashes: the exits are the reference's where the tokens and artefacts are
    exits = same_hash(cell, EXITS_FIELD) if EXITS_FIELD in expected else tokens and not rebuilt
    task = not rebuilt_artefacts(expected, run, ("task",))
    full = cell.rsplit("/", 1)[0] + "/full"
    return CellInputs({"tokens": tokens, "full tokens": same_hash(full, HASH_FIELD), "exits": exits, "task": task},
                      rebuilt)


def compare_field(cell: str, path: str, expected, value, rules: list[dict], inputs: CellInputs | None) -> Comparison:
    """One reference number against the run's value; `inputs` None for fields with no such inputs (latency)."""
    reference = expected["value"] if isinstance(expected, dict) else expected
    if value is None:
        return Comparison(cell, path, None, reference, PRESENCE, "in the reference, not in the run's cell", "FAIL")
    needed = inputs_of(path)
    if inputs is not None and not inputs.moved(needed):
        ok = math.isclose(value, reference, rel_tol=SAME_INPUTS_TOL, abs_tol=SAME_INPUTS_TOL)
        return Comparison(cell, path, value, reference, SAME_INPUTS,
                          f"±{SAME_INPUTS_TOL:g} ({', '.join(needed)} as the reference's)", status(ok))
    why = "" if inputs is None else f" ({'; '.join(inputs.moved(needed) + [f'{a} rebuilt' for a in inputs.rebuilt])})"
    if isinstance(expected, dict):
        ok = expected["low"] <= value <= expected["high"]
        return Comparison(cell, path, value, reference, INTERVAL,
                          f"[{expected['low']:.4g}, {expected['high']:.4g}] {expected['rule']}{why}", status(ok))
    rule = tolerance_for(path, rules)
    return Comparison(cell, path, value, reference, PATTERN, f"{rule['pattern']}: {describe(rule)}{why}",
                      status(within(value, reference, rule)))


def compare_hash(cell: str, path: str, wanted: str, run: RunCell, reference: dict, check_tokens: bool,
                 inputs: CellInputs) -> Comparison:
    """A generation hash: exact on the reference's platform, unless an artefact the cell is made from was rebuilt."""
    value = run.fields.get(path)
    platform = reference.get("platform")
    if not check_tokens:
        return Comparison(cell, path, value, wanted, NOT_GATED, "--no-tokens", "unchecked")
    if platform is None or run.platform != platform or platform.get("device") != "cpu":
        return Comparison(cell, path, value, wanted, NOT_GATED,
                          f"gated on the reference's platform ({_platform_text(platform or {})}), this run is "
                          f"{_platform_text(run.platform)}", "unchecked")
    if value != wanted and inputs.rebuilt:
        return Comparison(cell, path, value, wanted, NOT_GATED, f"{', '.join(inputs.rebuilt)} rebuilt", "unchecked")
    return Comparison(cell, path, value, wanted, HASH, f"exact on {_platform_text(platform)}", status(value == wanted))


def compare_cell(cell: str, expected: dict, run: RunCell, reference: dict, check_tokens: bool,
                 inputs: CellInputs) -> list[Comparison]:
    """Every field of one reference cell but its artefact digests (compare_artefacts reports those once)."""
    rows = []
    for path, wanted in sorted(expected.items()):
        if path.startswith(f"{ARTEFACTS}."):
            continue
        if path in GATED_HASHES:
            rows.append(compare_hash(cell, path, wanted, run, reference, check_tokens, inputs))
        else:
            rows.append(compare_field(cell, path, wanted, run.fields.get(path), reference["tolerances"], inputs))
    return rows


def compare_artefacts(cells: dict[str, RunCell], reference: dict, rows: list[Comparison]) -> list[Comparison]:
    """One row per artefact the reference records a digest of: `pass` where the run's is the same,
    `rebuilt` where it differs, with the cells it reaches and how many of them the hash rule left."""
    reached: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
    for cell, expected in reference["cells"].items():
        if cell not in cells:
            continue
        for role, record in cells[cell].artefacts.items():
            wanted = expected.get(f"{ARTEFACTS}.{role}")
            if wanted is not None:
                reached[(role, record["name"], record["sha256"], wanted)].append(cell)
    ungated = {row.cell for row in rows if row.rule == NOT_GATED and "rebuilt" in row.tolerance}
    out = []
    for (role, name, digest, wanted), keys in sorted(reached.items()):
        label = artefact_label(role, {"name": name})
        if digest == wanted:
            out.append(Comparison(f"({label})", f"{ARTEFACTS}.{role}", digest, wanted, ARTEFACT,
                                  f"{len(keys)} cells made from it", "pass"))
            continue
        moved = sum(key in ungated for key in keys)
        note = (f"{WHAT_DIFFERS[role]} differ from the reference's; of its {len(keys)} cells, {moved} decoded "
                "otherwise (hashes not gated; numbers whose inputs moved judged by statistical tolerances) and "
                f"{len(keys) - moved} as the reference (held exact)"
                if role in DIRECT_ROLES else
                f"{WHAT_DIFFERS[role]} differ from the reference's (upstream of the classifiers of its {len(keys)} cells)")
        out.append(Comparison(f"({label})", f"{ARTEFACTS}.{role}", digest, wanted, ARTEFACT, note, "rebuilt"))
    return out


def compare(cells: dict[str, RunCell], reference: dict, latency: dict | None = None,
            check_tokens: bool = True) -> list[Comparison]:
    """Every field the reference holds against the run; cells only in the run are unchecked."""
    rows: list[Comparison] = []
    for cell, expected in sorted(reference["cells"].items()):
        if cell not in cells:
            rows.append(Comparison(cell, "(cell)", None, None, PRESENCE, "in the reference, not in the run", "FAIL"))
            continue
        rows.extend(compare_cell(cell, expected, cells[cell], reference, check_tokens,
                                 cell_inputs(cell, cells, reference)))
    rows.extend(compare_artefacts(cells, reference, rows))
    for cell in sorted(set(cells) - set(reference["cells"])):
        rows.append(Comparison(cell, "(cell)", None, None, PRESENCE, "not in the reference", "unchecked"))
    expected_latency = reference.get("latency") or {}
    if not expected_latency:
        rows.append(Comparison("latency", "(all)", None, None, NOT_GATED,
                               "the reference holds no latency values", "unchecked"))
    for key, fields in sorted(expected_latency.items()):
        measured = (latency or {}).get(key, {})
        for path, wanted in sorted(fields.items()):
            rows.append(compare_field(f"latency/{key}", path, wanted, measured.get(path), reference["tolerances"], None))
    return rows


def unchecked_fields(cells: dict[str, RunCell], reference: dict) -> list[str]:
    """Field paths of checked cells that the reference does not hold."""
    return sorted({path for cell, expected in reference["cells"].items() if cell in cells
                   for path in cells[cell].fields if path not in expected})


def notes(cells: dict[str, RunCell], reference: dict) -> list[str]:
    """What the check could not know, said once: artefacts the reference or the run does not record."""
    checked = [cell for cell in reference["cells"] if cell in cells]
    recorded = [cell for cell in checked if any(p.startswith(f"{ARTEFACTS}.") for p in reference["cells"][cell])]
    out = []
    if checked and not recorded:
        out.append("the reference records no artefact digests (written before they were): every artefact is taken "
                   "as the reference's, so hashes are gated exactly; regenerate it to record them")
    unrecorded = [cell for cell in recorded if not cells[cell].artefacts]
    if unrecorded:
        out.append(f"{len(unrecorded)} cells of the run record no artefact digests (scored before they were): their "
                   "artefacts are taken as the reference's; rerun their score jobs to record them")
    return out


def counts(rows: list[Comparison]) -> dict[str, int]:
    """Fields by outcome: exact (hash or same inputs), within a tolerance (interval or pattern), failed,
    unchecked, and artefacts rebuilt."""
    return {
        "exact": sum(r.status == "pass" and r.rule in EXACT_RULES for r in rows),
        "tolerance": sum(r.status == "pass" and r.rule in (INTERVAL, PATTERN) for r in rows),
        "failed": sum(r.status == "FAIL" for r in rows),
        "unchecked": sum(r.status == "unchecked" for r in rows),
        "rebuilt": sum(r.status == "rebuilt" for r in rows),
    }


def format_table(rows: list[Comparison], unchecked: list[str] | None = None, said: list[str] | None = None) -> str:
    def shown(x: float | str | None, result: str) -> str:
        if x is None:
            return "missing" if result == "FAIL" else "-"
        return x if isinstance(x, str) else f"{x:.6g}"

    header = ("cell", "field", "value", "reference", "rule", "tolerance", "result")
    body = [(r.cell, r.path, shown(r.value, r.status), shown(r.reference, r.status), r.rule, r.tolerance, r.status)
            for r in rows]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip() for line in [header, *body]]
    if unchecked:
        lines.append(f"unchecked fields (not in the reference): {', '.join(unchecked)}")
    for row in rows:
        if row.status == "rebuilt":
            lines.append(f"{row.cell.strip('()')} rebuilt: {row.tolerance}")
    lines.extend(said or [])
    n = counts(rows)
    checked = n["exact"] + n["tolerance"] + n["failed"]
    lines.append(f"check: {checked - n['failed']} of {checked} fields pass ({n['exact']} exact, {n['tolerance']} within "
                 f"a tolerance), {n['failed']} outside, {n['unchecked']} unchecked; {n['rebuilt']} artefacts rebuilt")
    return "\n".join(lines)


def run_check(results_dir: str | Path, reference_path: str | Path, check_tokens: bool = True) -> tuple[list[Comparison], str]:
    """Rows and printed table of one check (raises ReferenceError / FileNotFoundError when it cannot run)."""
    reference = load_reference(reference_path)
    cells = read_cells(results_dir)
    rows = compare(cells, reference, read_latency(results_dir), check_tokens)
    return rows, format_table(rows, unchecked_fields(cells, reference), notes(cells, reference))


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
                        help="do not gate the token and exit hashes (another CPU's kernels may round differently); "
                             "numbers are still held exact where their tokens are the reference's")
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
