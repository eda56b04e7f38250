"""The regression check of a run against a reference, summarised as data: fields by outcome (exact,
within a tolerance, outside, unchecked), by rule, the artefacts it found rebuilt, and every failure.

    python benchmarks/gate_counts.py results/default /tmp/reference.json --label "training at 2 threads" \
        --out benchmarks/results/gate_other_machine.json      # appends to the file's runs
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from dynamax_bench.files import read_json, write_json
from dynamax_bench.provenance import git_commit, machine_description
from dynamax_bench.reporting.check import counts, run_check


def summary(results: Path, reference: Path) -> dict:
    rows, _ = run_check(results, reference)
    return {
        "counts": counts(rows),
        "by_rule": {f"{rule}: {status}": n for (rule, status), n in sorted(Counter((r.rule, r.status) for r in rows).items())},
        "rebuilt": [{"artefact": r.cell.strip("()"), "run": r.value, "reference": r.reference, "note": r.tolerance}
                    for r in rows if r.status == "rebuilt"],
        "failures": [{"cell": r.cell, "field": r.path, "value": r.value, "reference": r.reference, "rule": r.rule,
                      "tolerance": r.tolerance} for r in rows if r.status == "FAIL"],
        "cells": len({r.cell for r in rows if "/" in r.cell and not r.cell.startswith("(")}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("reference", type=Path)
    parser.add_argument("--label", required=True, help="what this run is (which machine or setting it stands for)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    report = read_json(args.out) if args.out.exists() else {"runs": []}
    report["runs"] = [run for run in report["runs"] if run["label"] != args.label]
    report["runs"].append({"label": args.label, "results": str(args.results), "reference": str(args.reference),
                           "machine": machine_description(), "commit": git_commit(),
                           **summary(args.results, args.reference)})
    write_json(args.out, report)
    print(report["runs"][-1]["counts"])


if __name__ == "__main__":
    main()
