"""Peak memory of extract_oracle, select_top_k and distill stays near one shard, not the store.

A wide 4-layer Mistral (width 512) on a 64-word vocabulary makes a store of 6 KiB per token
(3 exits x 512 x float32) at little compute; the corpus grows 4x between the two runs. Each stage
runs in a fresh process and reports its peak resident set (ru_maxrss): the growth between the
two corpus sizes must stay a small fraction of the store's growth. Holding the store in memory
(as a list, then concatenated) would grow by about twice the store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.memory_probe import SHARD_MB, peak_mib, wide_backbone, write_corpus


@pytest.mark.slow
def test_peak_memory_grows_far_less_than_the_store(tmp_path: Path) -> None:
    wide_backbone(tmp_path)
    sizes = (40, 160)
    peaks, store_mib = {}, {}
    for documents in sizes:
        write_corpus(tmp_path / f"corpus-n{documents}.jsonl", documents)
        peaks[documents] = {stage: peak_mib(stage, tmp_path, documents)
                            for stage in ("extract_oracle", "select_top_k", "distill")}
        shards = list((tmp_path / f"oracle-n{documents}").glob("shard-*.safetensors"))
        store_mib[documents] = sum(p.stat().st_size for p in shards) / 2**20
    growth = store_mib[sizes[1]] - store_mib[sizes[0]]
    report = {"store_mib": store_mib, "peak_mib": peaks, "shard_mb": SHARD_MB}
    print(json.dumps(report, indent=1))
    assert growth > 150, report  # the store grows by about 180 MiB
    for stage in ("extract_oracle", "select_top_k", "distill"):
        assert peaks[sizes[1]][stage] - peaks[sizes[0]][stage] < 0.25 * growth, (stage, report)
