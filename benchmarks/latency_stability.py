"""Do two runs of the latency rules give the same speedups? The test of a speedup's interval.

Each latency file times its method beside `full`, run for run, in the same job (costs/latency.py). This
compares two runs' latency folders (results/<profile>/latency of two runs of the same profile, commit
and machine): per (backbone, method), the batch-1 decode speedup of each run with its interval
(reporting/speedups.py), their ratio and whether the intervals overlap; the batched speedup of each
run; and how far `full`'s own time per decode step moved between the jobs, the drift the pairing is
there to cancel.

    python benchmarks/latency_stability.py runA/latency runB/latency --labels A B \
        --out benchmarks/results/latency_stability.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dynamax_bench.files import read_json, write_json
from dynamax_bench.provenance import git_commit, machine_description
from dynamax_bench.reporting.speedups import speedups
from dynamax_bench.reporting.statistics import IntervalSettings
from dynamax_bench.reporting.tables.main_results import batched_speedups


def read_run(folder: Path) -> list[dict]:
    files = sorted(folder.glob("*/*.json"))
    if not files:
        raise SystemExit(f"{folder}: no latency files (<backbone>/<method>.json); give a run's results/<profile>/latency")
    return [read_json(path) for path in files]


def full_times(latency: list[dict]) -> dict[str, list[float]]:
    """Per backbone, `full`'s median seconds per decode step in each job that timed it (its own and every
    method's reference)."""
    out: dict[str, list[float]] = {}
    for entry in latency:
        found = entry["seconds_per_decode_token"] if entry["reference"] is None else entry["reference"]["seconds_per_decode_token"]
        if found:
            out.setdefault(entry["backbone"], []).append(found["median"])
    return out


def compare(runs: list[list[dict]], settings: IntervalSettings) -> dict:
    first, second = (speedups(run, settings) for run in runs)
    batched = [batched_speedups(run) for run in runs]
    rows = []
    for key in sorted(set(first) & set(second)):
        a, b = first[key], second[key]
        if key[1] == "full":
            continue
        rows.append({"backbone": key[0], "method": key[1], "speedup": [a, b], "ratio": b["value"] / a["value"],
                     "overlap": a["lo"] <= b["hi"] and b["lo"] <= a["hi"],
                     "batched_speedup": [found.get(key) for found in batched]})
    ratios = [row["ratio"] for row in rows]
    pairs = [row["batched_speedup"] for row in rows if None not in row["batched_speedup"]]
    batched_ratios = [b / a for a, b in pairs]
    return {
        "methods": len(rows),
        "intervals_overlapping": sum(row["overlap"] for row in rows),
        "ratio_range": [min(ratios), max(ratios)] if ratios else None,
        "batched_ratio_range": [min(batched_ratios), max(batched_ratios)] if batched_ratios else None,
        "full_seconds_per_decode_step": [
            {backbone: {"min": min(times), "max": max(times), "jobs": len(times)} for backbone, times in full_times(run).items()}
            for run in runs],
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs=2, help="two runs' results/<profile>/latency folders")
    parser.add_argument("--labels", nargs=2, default=["first", "second"])
    parser.add_argument("--how", default="", help="how the runs were made (machine, load, commands)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/latency_stability.json"))
    args = parser.parse_args(argv)
    runs = [read_run(folder) for folder in args.folders]
    settings = {(e["prompts"], e["repeats"], e["warmup"], e["task"], e["max_new_tokens"]) for run in runs for e in run}
    if len(settings) != 1:
        raise SystemExit(f"the runs timed different settings {sorted(settings)}: compare runs of one profile")
    prompts, repeats, warmup, task, tokens = settings.pop()
    result = {
        "what": "two runs of the latency rules: batch-1 decode speedups over `full` (timed in the same job, beside "
                "each method) with 95% intervals over prompts, their ratio second/first, whether the intervals overlap",
        "runs": args.labels, "how": args.how, "commit": git_commit(), "machine": machine_description(),
        "settings": {"task": task, "prompts": prompts, "repeats": repeats, "warmup": warmup, "max_new_tokens": tokens},
        **compare(runs, IntervalSettings()),
    }
    write_json(args.out, result)
    print(f"{result['intervals_overlapping']} of {result['methods']} intervals overlap; speedup ratio "
          f"{result['ratio_range']}, batched {result['batched_ratio_range']}")


if __name__ == "__main__":
    main()
