"""Which implementation runs the Mamba-2 mixer: the fused CUDA kernels or transformers' PyTorch path.

transformers binds each function the mixer calls (`causal_conv1d_fn/update`, the SSM state update,
the chunked scan) once, when `modeling_mamba2` is imported (`use_kernel_func_from_hub_with_fallback`):
to mamba-ssm / causal-conv1d when those packages import, else, silently, to its PyTorch reference
path. Both give the same tokens up to rounding, but the fallback is several times slower, so a paper
run on it would spend GPU-days and report latencies of the wrong code. `runtime.mamba_kernels:
required` (the paper profile) turns that into an error where a Mamba-2 model is loaded for decoding;
`auto` (CPU profiles) reports the binding in the job's log and runs whatever is bound.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

log = logging.getLogger(__name__)

KERNEL_MODES = ("auto", "required")
TORCH_FALLBACK = "torch fallback"
# Function of transformers.models.mamba2.modeling_mamba2 -> (import name, distribution) of its kernel.
MAMBA2_FUNCTIONS: dict[str, tuple[str, str]] = {
    "causal_conv1d_fn": ("causal_conv1d", "causal-conv1d"),
    "causal_conv1d_update": ("causal_conv1d", "causal-conv1d"),
    "mamba2_selective_state_update": ("mamba_ssm", "mamba-ssm"),
    "mamba2_chunk_scan": ("mamba_ssm", "mamba-ssm"),
    "mamba2_split_conv1d_scan_combined": ("mamba_ssm", "mamba-ssm"),
}
INSTALL_HINT = (
    "install them into the environment that runs the job: `snakemake --sdm conda` builds envs/cuda.yaml "
    "(conda-forge mamba-ssm and causal-conv1d built for its pinned pytorch), or, in an existing CUDA "
    "environment, `pip install --no-build-isolation mamba-ssm causal-conv1d` against the installed torch"
)


class KernelsMissing(RuntimeError):
    """A CUDA run that asked for the fused Mamba-2 kernels would run the PyTorch fallback."""


@dataclass(frozen=True)
class KernelBinding:
    """One mixer function and what it dispatches to."""

    function: str
    distribution: str  # the package that provides the fused kernel
    implementation: str  # dotted name of the kernel, TORCH_FALLBACK, or 'unknown (...)'

    @property
    def fused(self) -> bool:
        return self.implementation != TORCH_FALLBACK and not self.implementation.startswith("unknown")


def _dispatch_target(function: Callable) -> tuple[Callable, Callable] | None:
    """(implementation, torch reference) from the closure of transformers' wrapper, or None when the
    wrapper has another shape (a transformers release that changed the mechanism)."""
    seen: set[int] = set()
    current: Callable | None = function
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        try:
            names = inspect.getclosurevars(current).nonlocals
        except TypeError:
            return None
        if "implementation" in names and "torch_function" in names:
            return names["implementation"], names["torch_function"]
        current = getattr(current, "__wrapped__", None)
    return None


def mamba2_bindings() -> list[KernelBinding]:
    """What each Mamba-2 mixer function of the installed transformers is bound to."""
    from transformers.models.mamba2 import modeling_mamba2

    bindings = []
    for name, (_, distribution) in MAMBA2_FUNCTIONS.items():
        function = getattr(modeling_mamba2, name, None)
        target = _dispatch_target(function) if function is not None else None
        if function is None:
            implementation = f"unknown (transformers has no modeling_mamba2.{name})"
        elif target is None:
            implementation = f"unknown (modeling_mamba2.{name} is not a use_kernel_func_from_hub_with_fallback wrapper)"
        elif target[0] is target[1]:
            implementation = TORCH_FALLBACK
        else:
            implementation = f"{target[0].__module__}.{target[0].__qualname__}"
        bindings.append(KernelBinding(name, distribution, implementation))
    return bindings


def format_bindings(bindings: Iterable[KernelBinding]) -> str:
    return "; ".join(f"{b.function} -> {b.implementation}" for b in bindings)


def _import_problem(module: str, distribution: str) -> str:
    """Why a kernel package is not used: not installed, or installed but failing to import."""
    if importlib.util.find_spec(module) is None:
        return f"{distribution} is not installed"
    try:
        importlib.import_module(module)
    except Exception as err:  # a build for another torch or CUDA fails here, and transformers hides it
        return f"{distribution} is installed but `import {module}` fails: {type(err).__name__}: {err}"
    return f"{distribution} imports, but transformers found no kernel for these functions in it (another version?)"


def uses_mamba2(modules: Iterable[nn.Module]) -> bool:
    """True when any module holds a transformers Mamba2Mixer (a Mamba-2 backbone or the `mamba` classifier)."""
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer

    return any(isinstance(m, Mamba2Mixer) for root in modules for m in root.modules())


def check_mamba2_kernels(mode: str, device: torch.device | str, modules: Iterable[nn.Module]) -> list[KernelBinding]:
    """Log what the Mamba-2 mixers of `modules` will run; under `required`, fail unless every
    function is a fused kernel on CUDA. Returns the bindings ([] when no module is Mamba-2)."""
    if mode not in KERNEL_MODES:
        raise ValueError(f"runtime.mamba_kernels: {mode!r} is not one of {KERNEL_MODES}")
    if not uses_mamba2(modules):
        return []
    device = torch.device(device)
    bindings = mamba2_bindings()
    log.info("Mamba-2 mixer on %s: %s", device, format_bindings(bindings))
    slow = [b for b in bindings if not b.fused]
    if mode == "required" and device.type != "cuda":
        raise KernelsMissing(
            f"runtime.mamba_kernels is 'required' but the model runs on {device}: the fused Mamba-2 kernels "
            "(mamba-ssm, causal-conv1d) run on CUDA only; run on a GPU (runtime.device: cuda) or set "
            "runtime.mamba_kernels: auto"
        )
    if slow and mode == "required":
        packages = {MAMBA2_FUNCTIONS[b.function] for b in slow}
        problems = "; ".join(_import_problem(module, dist) for module, dist in sorted(packages))
        raise KernelsMissing(
            f"runtime.mamba_kernels is 'required' but {', '.join(b.function for b in slow)} would run "
            f"transformers' PyTorch fallback ({problems}); {INSTALL_HINT}. To run the slow path anyway "
            "(latencies are then not the fused kernels'), set runtime.mamba_kernels: auto"
        )
    if slow and device.type == "cuda":
        log.warning("Mamba-2 on CUDA runs the PyTorch fallback for %s; %s", [b.function for b in slow], INSTALL_HINT)
    return bindings
