"""Provenance: which config, code and library versions produced an output."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import cache
from pathlib import Path
from importlib import metadata

from dynamax_bench.config import REPO_ROOT, config_hash

# Every package whose code touches a number of an output: the model (torch, transformers, tokenizers,
# weights through safetensors and gguf), classifier metrics (scikit-learn), task metrics (lm_eval,
# sacrebleu, rouge_score), FLOPs (fvcore), data (datasets), statistics and tables (numpy, scipy,
# pandas), figures (matplotlib) and the DAG (snakemake). tests/test_provenance.py keeps it complete.
PACKAGES = ("dynamax-bench", "torch", "transformers", "tokenizers", "safetensors", "gguf", "scikit-learn", "lm_eval",
            "sacrebleu", "rouge_score", "fvcore", "datasets", "numpy", "scipy", "pandas", "matplotlib", "snakemake")
# The fused Mamba-2 kernels change the numbers of a Mamba-2 model where installed (CUDA); recorded then.
OPTIONAL_PACKAGES = ("mamba-ssm", "causal-conv1d")


@cache
def package_versions() -> dict[str, str]:
    """Name -> installed version of every package of PACKAGES, and of OPTIONAL_PACKAGES installed."""
    versions = {}
    for name in PACKAGES + OPTIONAL_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name in PACKAGES:
                versions[name] = "not installed"
    return versions


@cache
def git_commit() -> str:
    """HEAD of the checkout, with '+dirty' when tracked files have uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("+dirty" if dirty else "")


@cache
def machine_description() -> str:
    """CPU model and core count, plus the GPU when torch sees one (for reported timings)."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    text = f"{cpu}, {os.cpu_count()} cores"
    import torch

    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


# Instruction-set flags whose kernels change float results (SIMD width, fused multiply-add, matrix units).
SIMD_FLAGS = ("sse4_2", "avx", "fma", "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile",
              "asimd", "sve")
# Variables that select kernels or thread counts at start-up (MKL_CBWR: MKL's conditional numerical
# reproducibility; ATEN_CPU_CAPABILITY: ATen's SIMD dispatch; ONEDNN_MAX_CPU_ISA: oneDNN's).
KERNEL_VARIABLES = ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                    "CUBLAS_WORKSPACE_CONFIG")


def cpu_flags() -> list[str]:
    """The SIMD_FLAGS this CPU has (from /proc/cpuinfo; empty where it is not readable)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return []
    for line in cpuinfo.read_text().splitlines():
        if line.startswith(("flags", "Features")):
            present = set(line.split(":", 1)[1].split())
            return [flag for flag in SIMD_FLAGS if flag in present]
    return []


def environment() -> dict:
    """What a trained artefact's bits depend on besides its inputs: the processor and its SIMD flags,
    torch's kernel dispatch (CPU capability, BLAS and oneDNN builds), threads, determinism switches
    and the variables that steer them. Recorded beside every artefact the pipeline trains, so that a
    rebuilt artefact that differs can be traced to the machine (docs/regression-gate.md)."""
    import torch

    config = torch.__config__.show().splitlines()
    record = {
        "machine": machine_description(),
        "cpu_flags": cpu_flags(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": next((line.strip(" -") for line in config if "Math Kernel Library" in line or "OpenBLAS" in line),
                     "unknown"),
        "onednn": next((line.strip(" -") for line in config if "MKL-DNN" in line or "oneDNN" in line), "none"),
        "mkldnn_enabled": torch.backends.mkldnn.enabled,
        "threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "variables": {name: os.environ[name] for name in KERNEL_VARIABLES if name in os.environ},
    }
    if torch.cuda.is_available():
        record["cuda"] = {"version": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    return record


def run_description(config: dict) -> dict:
    """What the index page of a run says about its profile (the `paper_tables` rule's params)."""
    runtime = config["runtime"]
    return {"profile": config["profile"], "config_hash": config_hash(config), "device": runtime["device"],
            "dtype": runtime["dtype"], "threads": runtime["threads"]}


def run_record(run: dict) -> dict:
    """A run's description with the code and library versions that made its outputs."""
    return {**run, "git_commit": git_commit(), "versions": package_versions()}


def provenance(profile: str, made_from: dict) -> dict:
    """Deterministic record for an output file (no timestamps: same inputs, same bytes).

    made_from: the settings the output was made with (a cell's decode and task specs), hashed, so
    that two cells can be compared without the rest of the profile.
    """
    return {
        "profile": profile,
        "spec_hash": config_hash(made_from),
        "git_commit": git_commit(),
        "versions": package_versions(),
    }
