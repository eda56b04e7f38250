"""Peak RSS of extract_oracle, select_top_k and distill at two corpus sizes, against the size of the
oracle store: the measurement of tests/test_memory.py (benchmarks/memory_probe.py: same wide random
Mistral, same corpus generator, each stage in a fresh process), written to a file.

    PYTHONPATH=. python benchmarks/oracle_memory.py --sizes 40 160 --out benchmarks/results/oracle_memory.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dynamax_bench.files import write_json
from dynamax_bench.provenance import git_commit, machine_description
from benchmarks.memory_probe import SHARD_MB, peak_mib, wide_backbone, write_corpus

STAGES = ("extract_oracle", "select_top_k", "distill")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[40, 160], help="corpus sizes in documents")
    parser.add_argument("--out", default="benchmarks/results/oracle_memory.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        wide_backbone(root)
        for documents in args.sizes:
            write_corpus(root / f"corpus-n{documents}.jsonl", documents)
            started = time.perf_counter()
            peaks = {stage: peak_mib(stage, root, documents) for stage in STAGES}
            shards = sorted((root / f"oracle-n{documents}").glob("shard-*.safetensors"))
            rows.append({"documents": documents, "tokens": documents * 250, "shards": len(shards),
                         "store_mib": sum(p.stat().st_size for p in shards) / 2**20, "peak_rss_mib": peaks,
                         "seconds": time.perf_counter() - started})
            print(rows[-1])
    first, last = rows[0], rows[-1]
    growth = last["store_mib"] - first["store_mib"]
    write_json(args.out, {
        "what": "peak RSS (ru_maxrss of a fresh process per stage) at two corpus sizes; 4-layer Mistral of "
                "width 512, 3 exits, float32 store (6 KiB per token), shards of "
                f"{SHARD_MB} MB, one torch thread",
        "machine": machine_description(), "git_commit": git_commit(),
        "runs": rows,
        "store_growth_mib": growth,
        "peak_growth_mib": {s: last["peak_rss_mib"][s] - first["peak_rss_mib"][s] for s in STAGES},
        "peak_growth_over_store_growth": {s: (last["peak_rss_mib"][s] - first["peak_rss_mib"][s]) / growth for s in STAGES},
    })


if __name__ == "__main__":
    main()
