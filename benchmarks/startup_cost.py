"""CPU seconds a DAG process spends before it does any work: Snakemake parsing the Snakefile (every
process of a cluster run does it once per job), and the imports of a `score` and a `generate` job.
CPU time, not wall time, so that a busy machine changes the numbers little; each of checkouts.

    git archive f964485 | tar -x -C /tmp/before
    python benchmarks/startup_cost.py --checkout f964485=/tmp/before --checkout HEAD=. \
        --out benchmarks/results/startup_cost.json
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from dynamax_bench.files import write_json
from dynamax_bench.provenance import machine_description, package_versions

SET_UP = "from dynamax_bench.runtime import set_up\nset_up({'seed': 1, 'threads': 1, 'offline': True}"
PROBES = {
    # the job scripts' first lines: set_up, then the rule's function (workflow/scripts/<rule>.py)
    "score job imports": "{set_up}{score_kw})\nfrom dynamax_bench.reporting.score import score_cell",
    "generate job imports": "{set_up})\nfrom dynamax_bench.generation.generate import generate_cell\n"
                            "from dynamax_bench.generation.decoder import Decoder",
}


def cpu_seconds(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 2)


def measure(checkout: Path, repeats: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    takes_torch_flag = "torch: bool" in (checkout / "dynamax_bench" / "runtime.py").read_text()
    out = {}
    with tempfile.TemporaryDirectory() as workdir:
        parse = [sys.executable, "-m", "snakemake", "paper_tables/", "-n", "--configfile", "config/smoke.yaml",
                 "--directory", workdir]
        out["snakemake -n (smoke profile)"] = min(cpu_seconds(parse, checkout, env) for _ in range(repeats))
    for name, code in PROBES.items():
        code = code.format(set_up=SET_UP, score_kw=", torch=False" if takes_torch_flag else "")
        out[name] = min(cpu_seconds([sys.executable, "-c", code], checkout, env) for _ in range(repeats))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", action="append", required=True, help="LABEL=PATH of a dynamax-bench tree")
    parser.add_argument("--repeats", type=int, default=2, help="the least CPU time of this many runs")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    checkouts = dict(item.split("=", 1) for item in args.checkout)
    report = {"cpu_seconds": {label: measure(Path(path).resolve(), args.repeats) for label, path in checkouts.items()},
              "load_average": os.getloadavg(), "machine": machine_description(), "versions": package_versions()}
    write_json(args.out, report)
    print(report)


if __name__ == "__main__":
    main()
