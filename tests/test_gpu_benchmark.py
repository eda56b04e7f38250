"""benchmarks/gpu_paper_shapes.py runs every step at tiny shapes on the CPU.

Device time is scarce (minutes per session): a step of the GPU benchmark that breaks must break
here, not on the GPU. At tiny shapes the numbers mean nothing; the checks it makes must still hold.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.config import REPO_ROOT


@pytest.mark.slow
def test_gpu_benchmark_runs_every_step_at_tiny_shapes(tiny_mistral: Backbone, tiny_mamba2: Backbone,
                                                      tmp_path: Path) -> None:
    folder = Path(tiny_mistral.model.name_or_path).parent
    assert Path(tiny_mamba2.model.name_or_path).parent == folder
    out = tmp_path / "gpu.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_paper_shapes.py", "--tiny", str(folder), "--out", str(out),
         "--shapes", "tiny", "--device", "cpu", "--new-tokens", "4", "--repeats", "1", "--batch-sizes", "2", "3",
         "--no-kernels", "--float32"],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["errors"] == []
    assert report["kernels_hidden"] and not any(b["fused"] for b in report["mamba2_bindings"])
    for name, checks in report["equivalence"].items():
        assert all(checks["engine_equals_generate"].values()), (name, checks["engine_equals_generate"])
        assert all(a["rows"] == 4 and a["unexplained"] == 0 for a in checks["batch_4_against_batch_1"].values()), name
    assert set(report["models"]) == {"Mistral tiny shapes", "Mamba-2 tiny shapes", "Mistral tiny shapes float32"}
    for name, model in report["models"].items():
        if not name.endswith("float32"):
            assert model["batch 1"]["reference full"]["ms_per_token_median"] > 0, name
            assert model["batch 1"]["engine full"]["ms_per_token_median"] > 0, name
            assert model["batch 3"]["engine full"]["tokens_per_s_median"] > 0, name
        batch = model["batch 2"]
        for method in ("full", "ee-calm", "ee-mamba"):
            entry = next(v for k, v in batch.items() if k.startswith(f"engine {method}"))
            assert entry["against_batch_1"]["rows"] == 2 and entry["against_batch_1"]["unexplained"] == 0, (name, method)
            assert 1 <= entry["host_reads_per_step"] <= 5, (name, method)  # one per step, one per exit point
        assert all(entry["tokens_per_s_median"] > 0 for key, entry in batch.items()
                   if key == "model.generate" or key.startswith("engine")), name
    assert report["models"]["Mistral tiny shapes float32"]["dtype"] == "torch.float32"
    assert report["models"]["Mamba-2 tiny shapes"]["mamba_kernels_required_check"].startswith("refuses")  # CPU
