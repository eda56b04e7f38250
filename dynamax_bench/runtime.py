"""Per-job set-up shared by every rule: logging to the rule's log, seeds, threads, offline mode."""

from __future__ import annotations

import logging
import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def job_runtime(config: dict) -> dict:
    """What `set_up` reads: seed, torch threads (they can change float results) and offline mode.
    Every rule gets it as `params.runtime`; device and dtype go only to the rules that use them."""
    runtime = config["runtime"]
    return {"seed": config["seed"], "threads": runtime["threads"], "offline": runtime["offline"]}


def set_up(runtime: dict, log_file: str | Path | None = None, *, torch: bool = True) -> None:
    """Make a job deterministic and quiet about the network before any model code runs.

    runtime: `job_runtime(config)`, passed to every rule as `params.runtime` so that a change reruns it.
    torch: seed torch and set its threads; the rules that run no model (score, paper_tables, check)
    pass False and skip importing it (seconds of start-up per job).
    """
    import numpy as np  # here, not at the top: the Snakefile imports job_runtime when it parses

    if runtime.get("offline", True):
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    seed = runtime["seed"]
    random.seed(seed)
    np.random.seed(seed)
    if torch:
        import torch as torch_module

        torch_module.set_num_threads(runtime.get("threads", 2))
        torch_module.manual_seed(seed)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        handlers=handlers, force=True)

    def log_uncaught(kind, value, traceback):  # the rule's log keeps the reason it failed
        logging.getLogger("dynamax_bench").error("job failed", exc_info=(kind, value, traceback))

    sys.excepthook = log_uncaught


@contextmanager
def deterministic(threads: int | None = None) -> Iterator[None]:
    """Torch's deterministic algorithms, and a fixed thread count where given, for a training run;
    both restored after it. On CPU an op without a deterministic implementation stops the run
    rather than vary it; on CUDA such an op warns (cuBLAS is made deterministic by its workspace
    setting, which must be set before it starts). What this cannot fix, kernels that round
    differently on another processor, docs/regression-gate.md measures."""
    import torch

    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    previous = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    if threads is not None:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=torch.cuda.is_available())
    try:
        yield
    finally:
        torch.set_num_threads(previous[0])
        torch.use_deterministic_algorithms(previous[1])
