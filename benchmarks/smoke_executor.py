"""The smoke profile end to end twice, locally and through snakemake-executor-plugin-cluster-generic
(tests/profiles/cluster-generic: one process per job), in fresh folders: the wall time of each and
whether every cell file is byte for byte the same. (No CPU time: the executor's jobs are detached
processes, as on a cluster, which no rusage of this process counts.)

    python benchmarks/smoke_executor.py --out benchmarks/results/smoke_executor.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dynamax_bench.config import REPO_ROOT
from dynamax_bench.files import write_json
from dynamax_bench.provenance import git_commit, machine_description, package_versions

SMOKE = ["paper_tables/", "--snakefile", str(REPO_ROOT / "Snakefile"), "--configfile", str(REPO_ROOT / "config" / "smoke.yaml")]
RUNS = {
    "local": ["--cores", "2"],
    "cluster-generic": ["--profile", str(REPO_ROOT / "tests" / "profiles" / "cluster-generic")],
}


def timed_run(name: str, workdir: Path) -> dict:
    """One run of the smoke DAG, timed."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "snakemake", *SMOKE, "--directory", str(workdir), *RUNS[name]],
                            capture_output=True, text=True, cwd=REPO_ROOT)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{name} run failed:\n{result.stderr[-4000:]}")
    return {
        "wall_s": round(wall, 1),
        "load_average_1min_at_start": load,
        "jobs_submitted": result.stderr.count("Submitted job "),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {name: Path(tmp) / name for name in RUNS}
        runs = {name: timed_run(name, path) for name, path in dirs.items()}
        cells = sorted(p.relative_to(dirs["local"]) for p in (dirs["local"] / "results" / "smoke" / "cells").rglob("*.json"))
        differing = [str(c) for c in cells if (dirs["local"] / c).read_bytes() != (dirs["cluster-generic"] / c).read_bytes()]
    report = {
        "runs": runs,
        "cells": len(cells),
        "cells_differing": differing,
        "machine": machine_description(),
        "commit": git_commit(),
        "versions": package_versions(),
    }
    write_json(args.out, report)
    print(report)


if __name__ == "__main__":
    main()
