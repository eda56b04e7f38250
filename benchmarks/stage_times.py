"""Stage times of a finished run, from the `benchmark:` files Snakemake wrote for each job.

Each rule with a `benchmark:` directive leaves one TSV per job (wall seconds, peak RSS, CPU
time); this sums them per rule, so that the time a stage costs is read from the run itself
rather than estimated. Jobs run in parallel, so the sums exceed the run's wall time.

    python benchmarks/stage_times.py --results results/default --resources resources
"""

from __future__ import annotations

import argparse
import csv
import statistics
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JobTime:
    rule: str
    seconds: float
    max_rss_mb: float
    cpu_seconds: float


def read_benchmarks(root: Path, since: float = 0.0) -> list[JobTime]:
    """Every `<root>/benchmarks/<rule>/**.tsv` (Snakemake's benchmark format) modified after `since`
    (a timestamp), one row per job."""
    jobs = []
    for path in sorted((root / "benchmarks").rglob("*.tsv")):
        if path.stat().st_mtime <= since:
            continue
        rule = path.relative_to(root / "benchmarks").parts[0].removesuffix(".tsv")
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if not rows:
            raise ValueError(f"{path} has no timing row: the job that wrote it did not finish")
        row = rows[0]
        cpu = row.get("cpu_time", "0")
        jobs.append(JobTime(rule, float(row["s"]), float(row["max_rss"]), float(cpu) if cpu not in ("", "-") else 0.0))
    return jobs


def per_rule(jobs: list[JobTime]) -> dict[str, dict]:
    """Per rule: jobs, summed, median and slowest wall seconds, summed CPU seconds, peak RSS."""
    stages = {}
    for rule in sorted({job.rule for job in jobs}):
        mine = [job for job in jobs if job.rule == rule]
        times = [job.seconds for job in mine]
        stages[rule] = {"jobs": len(mine), "wall_seconds_sum": sum(times), "wall_seconds_median": statistics.median(times),
                        "wall_seconds_max": max(times), "cpu_seconds_sum": sum(job.cpu_seconds for job in mine),
                        "peak_rss_mb": max(job.max_rss_mb for job in mine)}
    return stages


def markdown_table(jobs: list[JobTime]) -> str:
    """One row per rule (per_rule), as a Markdown table."""
    lines = ["| rule | jobs | wall s, sum | median | max | CPU s, sum | peak RSS MB |", "|---|---|---|---|---|---|---|"]
    for rule, s in per_rule(jobs).items():
        lines.append(f"| {rule} | {s['jobs']} | {s['wall_seconds_sum']:.0f} | {s['wall_seconds_median']:.1f} | "
                     f"{s['wall_seconds_max']:.1f} | {s['cpu_seconds_sum']:.0f} | {s['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results/default"))
    parser.add_argument("--resources", type=Path, default=Path("resources"))
    args = parser.parse_args()
    jobs = read_benchmarks(args.resources) + read_benchmarks(args.results)
    if not jobs:
        raise SystemExit(f"no benchmark files under {args.results}/benchmarks or {args.resources}/benchmarks: run the workflow first")
    print(markdown_table(jobs))


if __name__ == "__main__":
    main()
