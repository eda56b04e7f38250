"""Self-speculative decoding against `full` in a run's generations: rows and tokens compared.

Every spec-* generations file of a run (every backbone and task the profile decodes) against the
same task's `full` file, sample by sample: the token ids, the output text and the stop reason, with
the spec file's own near-tie record (`agreement`: rows re-decoded at batch 1, rows that differed
before it). The score rule already refuses a spec cell whose outputs differ from full's; this
counts tokens too, and says how many rows needed the re-decode to stay exact.

    PYTHONPATH=. python benchmarks/spec_equality.py results/default --how "the default run of <date>" \
        --out benchmarks/results/spec_equality_default.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dynamax_bench.files import write_json
from dynamax_bench.generation.generate import read_generations
from dynamax_bench.provenance import machine_description


def compare(spec_path: Path, full_path: Path) -> dict:
    if not full_path.exists():
        raise SystemExit(f"{spec_path} has no {full_path.name} beside it; finish the run (or ask for that file) first")
    spec_header, spec_rows = read_generations(spec_path)
    _, full_rows = read_generations(full_path)
    if [row["id"] for row in spec_rows] != [row["id"] for row in full_rows]:
        raise ValueError(f"{spec_path} and {full_path} hold different samples; regenerate both from one profile")
    rows_differing = tokens_differing = tokens = 0
    for row, reference in zip(spec_rows, full_rows):
        mine, theirs = row["token_ids"], reference["token_ids"]
        tokens += max(len(mine), len(theirs))
        differing = sum(a != b for a, b in zip(mine, theirs)) + abs(len(mine) - len(theirs))
        tokens_differing += differing
        rows_differing += bool(differing or row["output"] != reference["output"]
                               or row["stop_reason"] != reference["stop_reason"])
    agreement = spec_header.get("agreement", {})
    return {"rows": len(spec_rows), "rows_differing": rows_differing, "tokens": tokens,
            "tokens_differing": tokens_differing, "rows_redecoded": agreement.get("rows_redecoded"),
            "rows_with_near_ties": agreement.get("rows_with_near_ties")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="a run's results folder, e.g. results/default")
    parser.add_argument("--how", required=True, help="which run the results folder holds (commit, date, machine)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cells = {}
    for spec_path in sorted((args.results / "generations").glob("*/*/spec-*.jsonl")):
        backbone, task = spec_path.parent.parent.name, spec_path.parent.name
        cells[f"{backbone}/{task}/{spec_path.stem}"] = compare(spec_path, spec_path.with_name("full.jsonl"))
    if not cells:
        raise SystemExit(f"no spec-*.jsonl under {args.results / 'generations'}; run the profile's spec cells first")
    totals = {key: sum(c[key] or 0 for c in cells.values())
              for key in ("rows", "rows_differing", "tokens", "tokens_differing", "rows_redecoded")}
    write_json(args.out, {"results": str(args.results), "how": args.how, "machine": machine_description(),
                          "totals": totals, "cells": cells})
    print(f"{totals['rows']} rows, {totals['rows_differing']} differing; {totals['tokens']} tokens, "
          f"{totals['tokens_differing']} differing; {totals['rows_redecoded']} re-decoded at a near tie")


if __name__ == "__main__":
    main()
