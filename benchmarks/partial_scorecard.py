"""The claims and the calibration check on whatever cells a (partial) run of a profile holds.

The scorecard of `paper_tables` needs every cell of the profile; this reads the cells and calibration
files a run has so far (e.g. one backbone and task, asked for by their paths) and writes the same
comparisons (Holm over the comparisons present), Table 8's rows and the violation count, labelled
with what the run covered. A comparison whose cells are missing says so, as in the full scorecard.

    python benchmarks/partial_scorecard.py results/default --profile default --how "..." \
        --out benchmarks/results/default_smollm2_triviaqa.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dynamax_bench.config import REPO_ROOT, load_config
from dynamax_bench.files import read_json, write_json
from dynamax_bench.provenance import machine_description
from dynamax_bench.reporting.claims import claims_scorecard, counts
from dynamax_bench.reporting.reference import run_cells
from dynamax_bench.reporting.tables.calibration import calibration_table, violations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the run's results/<profile> folder")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--how", required=True, help="what the run covered and how it was made")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cells = [read_json(p) for p in run_cells(args.results).values()]
    calibrations = [read_json(p) for p in sorted((args.results / "calibration").rglob("*.json"))]
    evidence = load_config(REPO_ROOT / "config" / f"{args.profile}.yaml")["evidence"]
    rows, outcomes = claims_scorecard(cells, evidence)
    table = calibration_table(cells, calibrations)
    write_json(args.out, {
        "profile": args.profile, "how": args.how, "machine": machine_description(),
        "cells": sorted(f"{c['backbone']}/{c['task']}/{c['method']}" for c in cells),
        "counts": counts(outcomes), "violations": violations(table), "scorecard": rows,
        "comparisons": [o.__dict__ for o in outcomes],
        "calibration": json.loads(table.to_json(orient="records")),
    })
    print(counts(outcomes), violations(table), "->", args.out)


if __name__ == "__main__":
    main()
