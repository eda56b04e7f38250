"""Every job a profile's DAG plans, with what it reads and writes, to check that a refactoring of the
workflow leaves the DAG alone.

    python benchmarks/dag_snapshot.py before.json                # every profile in config/ (+ variants)
    (change the rules or dynamax_bench/plan.py)
    python benchmarks/dag_snapshot.py after.json
    python benchmarks/dag_snapshot.py --compare before.json after.json

A snapshot is a dry run through Snakemake's API (nothing runs, no network) of `paper_tables/` and
`results/<profile>/check.txt`: per job its rule, wildcards, outputs, named inputs, params (what a job
reads: a changed param reruns it), log, benchmark file, threads, priority and `gpu` resource. Two
checkouts whose snapshots are equal plan the same jobs with the same files and settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
# Profile variants that exercise the other job groupings (`generation.ee_jobs`, `baseline_jobs`,
# `latency.policies`) besides what config/ sets.
VARIANTS = {
    "smoke-per_kind-per_method": ("smoke", "generation: {ee_jobs: per_kind, baseline_jobs: per_method}\n"),
    "default-per_kind-all_policies": ("default", "generation: {ee_jobs: per_kind}\nlatency: {policies: all}\n"),
}


def plain(value: Any) -> Any:
    """JSON-able form of a param (Snakemake's Namedlist and friends become lists and dicts)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def planned_jobs(checkout: Path, configfiles: list[Path], profile: str) -> list[dict[str, Any]]:
    """The jobs of one dry run, sorted by rule and outputs."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, Quietness, ResourceSettings

    with tempfile.TemporaryDirectory() as workdir, SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow_api = api.workflow(resource_settings=ResourceSettings(cores=2),
                                    config_settings=ConfigSettings(configfiles=configfiles),
                                    snakefile=checkout / "Snakefile", workdir=Path(workdir))
        dag_api = workflow_api.dag(DAGSettings(targets={"paper_tables/", f"results/{profile}/check.txt"}))
        dag_api.execute_workflow(executor="dryrun")
        jobs = [{"rule": job.rule.name, "wildcards": dict(job.wildcards.items()), "output": sorted(map(str, job.output)),
                 "input": plain(dict(job.input.items())), "params": plain(dict(job.params.items())),
                 "log": list(map(str, job.log)), "benchmark": str(job.benchmark) if job.benchmark else None,
                 "threads": job.threads, "priority": job.priority, "gpu": job.resources.get("gpu")}
                for job in workflow_api._workflow.dag.jobs]
    # the checkout's own path (the reference file of `check`) is the same file in another checkout
    jobs = json.loads(json.dumps(jobs).replace(str(checkout.resolve()), "<checkout>"))
    return sorted(jobs, key=lambda job: (job["rule"], job["output"]))


def snapshot(checkout: Path, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    out = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            profile, override = VARIANTS.get(name, (name, None))
            files = [checkout / "config" / f"{profile}.yaml"]
            if override:
                files.append(Path(scratch) / f"{name}.yaml")
                files[-1].write_text(override)
            out[name] = planned_jobs(checkout, files, profile)
            print(f"{name}: {len(out[name])} jobs", file=sys.stderr)
    return out


def compare(before: dict, after: dict) -> dict[str, Any]:
    """Per profile: job counts, and the jobs only one side plans (by rule and outputs) or plans differently."""
    report = {}
    for name in sorted(set(before) | set(after)):
        a = {(j["rule"], tuple(j["output"])): j for j in before.get(name, [])}
        b = {(j["rule"], tuple(j["output"])): j for j in after.get(name, [])}
        report[name] = {"jobs_before": len(a), "jobs_after": len(b),
                        "only_before": sorted(map(str, a.keys() - b.keys())),
                        "only_after": sorted(map(str, b.keys() - a.keys())),
                        "changed": sorted(str(key) for key in a.keys() & b.keys() if a[key] != b[key])}
        report[name]["identical"] = not (report[name]["only_before"] or report[name]["only_after"]
                                         or report[name]["changed"])
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="OUT.json [profile ...], or with --compare BEFORE.json AFTER.json")
    parser.add_argument("--compare", action="store_true")
    args = parser.parse_args()
    if args.compare:
        before, after = (json.loads(Path(p).read_text()) for p in args.paths)
        report = compare(before, after)
        print(json.dumps(report, indent=1))
        sys.exit(0 if all(r["identical"] for r in report.values()) else 1)
    sys.path.insert(0, str(REPO_ROOT))  # the Snakefile imports this checkout's dynamax_bench
    names = args.paths[1:] or sorted(p.stem for p in (REPO_ROOT / "config").glob("*.yaml")) + list(VARIANTS)
    Path(args.paths[0]).write_text(json.dumps(snapshot(REPO_ROOT, names), indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
