"""The evidence of one finished default-profile run, in files that git keeps (results/ and
paper_tables/ are ignored): wall time and sample counts, time per stage (the `benchmark:` files),
the batched engine's agreement with batch 1 summed over every cell, the mamba kind's prompt cost
against its decode savings per task (the ledger of the real `ee-mamba` cells), each backbone's
chosen top-k, calibrated cells below their target, and copies of the tables behind them (Tables 2,
2b, 2c, 3, 4, 6, 7, 8, 9; 10, 10b and 10c where config/lossless.yaml added them) and the trade-off figures. It writes them to
benchmarks/results/<date>-<profile>/ and regenerates benchmarks/results/INDEX.md (benchmarks/history.py).

    python benchmarks/default_run.py --wall-seconds 2016 --how "make paper_tables in a fresh clone, ..." \
        --log .snakemake/log/<the run>.snakemake.log
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from statistics import fmean

from history import RESULTS, write_index, write_readme
from stage_times import per_rule, read_benchmarks

from dynamax_bench.files import read_json, write_json
from dynamax_bench.provenance import git_commit, machine_description
from dynamax_bench.reporting.tables.calibration import calibration_table, violations

TABLES = ("table2_distillation", "table2b_top_k_choice", "table2c_exit_weights", "table3_main_results",
          "table4_ee_vs_pruning", "table6_claims", "table6_claims_comparisons", "table7_batch_agreement",
          "table8_calibration", "table9_savings_at_targets")
SPECULATIVE_TABLES = ("table10_speculative", "table10b_speculative_latency", "table10c_speculative_payoff")  # with
# config/lossless.yaml (the self-speculative rows), not in the default profile's run
FIGURES = ("figure1_tradeoff_smollm2.png", "figure1_tradeoff_mamba2.png")


def agreement_totals(cells: list[dict]) -> dict:
    """Every batched cell's agreement with batch 1, summed; the cells decoded on the reference path counted apart."""
    totals: Counter = Counter()
    for cell in cells:
        found = cell.get("agreement")
        if found is None:
            totals["cells_on_reference_path"] += 1
            continue
        totals["cells"] += 1
        for key in ("rows", "rows_with_near_ties", "rows_redecoded", "rows_differing", "tokens_differing", "unexplained"):
            totals[key] += found[key]
        totals["tokens_redecoded"] += found.get("tokens_redecoded", 0)  # cells since 43d9897 record it
    return dict(totals)


def mamba_prompt_cost(cells: list[dict]) -> list[dict]:
    """Per backbone, task and `ee-mamba` cell: the classifier's pass over the prompt (what the prompt
    phase executes beyond the full model's prompt forward) against what the decode steps saved."""
    rows = []
    for cell in cells:
        if not cell["method"].startswith("ee-mamba-"):
            continue
        flops = cell["flops"]
        prompt_pass = flops["prompt"]["executed"] - flops["prompt"]["full"]
        decode_saving = flops["decode"]["full"] - flops["decode"]["executed"]
        rows.append({"backbone": cell["backbone"], "task": cell["task"], "method": cell["method"],
                     "n": cell["n_samples"], "prompt_tokens_mean": flops["prompt"]["tokens"] / cell["n_samples"],
                     "prompt_pass_flops": prompt_pass, "decode_saving_flops": decode_saving,
                     "prompt_pass_over_decode_saving": prompt_pass / decode_saving if decode_saving > 0 else None,
                     "decode_savings": flops["decode_savings"], "total_savings": flops["savings"]})
    return sorted(rows, key=lambda r: (r["backbone"], r["task"], r["method"]))


def per_task_ratio(rows: list[dict]) -> list[dict]:
    """The mamba prompt-pass / decode-saving ratio per backbone and task, over its cells."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["backbone"], row["task"]), []).append(row)
    return [{"backbone": b, "task": t, "cells": len(g),
             "prompt_pass_flops_mean": fmean(r["prompt_pass_flops"] for r in g),
             "decode_saving_flops_mean": fmean(r["decode_saving_flops"] for r in g),
             "total_savings_range": [min(r["total_savings"] for r in g), max(r["total_savings"] for r in g)],
             "decode_savings_range": [min(r["decode_savings"] for r in g), max(r["decode_savings"] for r in g)]}
            for (b, t), g in sorted(groups.items())]


def stage_seconds(roots: list[Path], since: float = 0.0) -> dict:
    """stage_times.per_rule over the benchmark files written after `since` (a resumed run's earlier
    segments leave files of jobs it reused or no longer asks for)."""
    return per_rule([job for root in roots for job in read_benchmarks(root, since)])


def jobs_of(log: Path) -> int:
    """The run's job count, from its Snakemake log's last `N of N steps (100%) done`."""
    done = re.findall(r"^(\d+) of (\d+) steps \(100%\) done", log.read_text(), re.M)
    if not done:
        raise SystemExit(f"{log}: no 'N of N steps (100%) done' line: pass the log of a finished run")
    return int(done[-1][1])


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def comparison_counts(comparisons: list[dict]) -> dict[str, int]:
    """The scorecard's comparisons: how many, how many decided, and each verdict."""
    verdicts = Counter(row["verdict"] for row in comparisons)
    decided = verdicts["holds"] + verdicts["fails"] + verdicts["equivalent"]
    return {"comparisons": len(comparisons), "decided": decided, **dict(sorted(verdicts.items()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results/default"))
    parser.add_argument("--resources", type=Path, default=Path("resources"))
    parser.add_argument("--tables", type=Path, default=Path("paper_tables"))
    parser.add_argument("--wall-seconds", type=float, required=True,
                        help="wall time of the run as measured around it (e.g. `time make paper_tables`)")
    parser.add_argument("--how", required=True, help="how the wall time was measured (machine load, set-up, repeats)")
    parser.add_argument("--log", type=Path, required=True, help="the run's Snakemake log (.snakemake/log/...), for its job count")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--date", default=datetime.now(timezone.utc).strftime("%Y-%m-%d"), help="the run's date (UTC)")
    parser.add_argument("--run", type=int, default=1,
                        help="the day's Nth measured run of the profile: N > 1 writes <date>.N-<profile>/")
    parser.add_argument("--since", type=Path, help="count only the jobs whose benchmark file is newer than this file")
    args = parser.parse_args()
    if args.run < 1:
        parser.error(f"--run {args.run}: the day's runs count from 1")
    out = RESULTS / (f"{args.date}-{args.profile}" if args.run == 1 else f"{args.date}.{args.run}-{args.profile}")

    cells = [read_json(p) for p in sorted((args.results / "cells").rglob("*.json"))]
    if not cells:
        raise SystemExit(f"no cells under {args.results / 'cells'}: run the default profile first")
    samples = {cell["task"]: cell["n_samples"] for cell in cells}
    classifiers = [read_json(p) for p in sorted((args.results / "classifiers").glob("*/*.json"))]
    chosen = {meta["backbone"]: meta["top_k_selection"]["chosen"] for meta in classifiers if "top_k_selection" in meta}
    mamba = mamba_prompt_cost(cells)
    claims = read_csv(args.tables / "table6_claims.csv")
    calibrations = [read_json(p) for p in sorted((args.results / "calibration").rglob("*.json"))]
    summary = {
        "profile": args.profile,
        "date": args.date,
        "machine": machine_description(),
        "git_commit": read_json(args.tables / "provenance.json").get("git_commit", git_commit()),
        "wall_seconds": args.wall_seconds,
        "how": args.how,
        "jobs": jobs_of(args.log),
        "scorecard": dict(sorted(Counter(claim["verdict"] for claim in claims).items())),
        "comparisons": comparison_counts(read_csv(args.tables / "table6_claims_comparisons.csv")),
        "cells": len(cells),
        "samples_per_task": samples,
        "stages": stage_seconds([args.resources, args.results], args.since.stat().st_mtime if args.since else 0.0),
        "agreement_with_batch_1": agreement_totals(cells),
        "chosen_top_k": chosen,
        "calibration_violations": violations(calibration_table(cells, calibrations)),
        "mamba_prompt_cost": {"per_task": per_task_ratio(mamba), "per_cell": mamba},
        "claims": claims,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    speculative = SPECULATIVE_TABLES if (args.tables / f"{SPECULATIVE_TABLES[0]}.md").exists() else ()
    for stem in (*TABLES, *speculative):
        for ext in ("md", "csv"):
            shutil.copyfile(args.tables / f"{stem}.{ext}", out / f"{stem}.{ext}")
    for name in FIGURES:
        shutil.copyfile(args.tables / name, out / name)
    write_index()
    write_readme()
    print(f"{len(cells)} cells, samples {samples}, wall {args.wall_seconds:.0f} s -> {out}")


if __name__ == "__main__":
    main()
