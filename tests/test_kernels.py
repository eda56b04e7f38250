"""The Mamba-2 kernel report and the `runtime.mamba_kernels: required` check (CPU: no fused kernels here)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch
from transformers.integrations import use_kernel_func_from_hub_with_fallback
from transformers.models.mamba2 import modeling_mamba2

from dynamax_bench.backbones import kernels
from dynamax_bench.backbones.kernels import (
    MAMBA2_FUNCTIONS,
    TORCH_FALLBACK,
    KernelBinding,
    KernelsMissing,
    check_mamba2_kernels,
    mamba2_bindings,
)
from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.classifiers.registry import build_classifier
from dynamax_bench.config import ConfigError, REPO_ROOT
from dynamax_bench.generation.decoder import Decoder
from dynamax_bench.profile_checks import load_profile, validate_profile
from dynamax_bench.spec import decode_spec


def rebind(monkeypatch: pytest.MonkeyPatch, name: str, package: str) -> None:
    """Bind modeling_mamba2.<name> the way transformers does at import, against `package`."""
    original = getattr(modeling_mamba2, name).__wrapped__
    monkeypatch.setattr(modeling_mamba2, name, use_kernel_func_from_hub_with_fallback(name, package)(original))


def test_report_names_the_torch_fallback_for_every_missing_package() -> None:
    bindings = {b.function: b for b in mamba2_bindings()}
    assert set(bindings) == set(MAMBA2_FUNCTIONS)
    for name, (module, distribution) in MAMBA2_FUNCTIONS.items():
        assert bindings[name].distribution == distribution
        if importlib.util.find_spec(module) is None:
            assert bindings[name].implementation == TORCH_FALLBACK and not bindings[name].fused


def test_report_names_a_bound_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """A package that provides the function is what transformers' wrapper dispatches to, and the report says so."""
    def kernel(hidden_states, conv_state, weight, bias=None, activation=None):
        return hidden_states

    kernel.__module__, kernel.__qualname__ = "dynamax_fake_conv", "causal_conv1d_update"
    fake = types.ModuleType("dynamax_fake_conv")
    fake.causal_conv1d_update = kernel
    monkeypatch.setitem(sys.modules, "dynamax_fake_conv", fake)
    rebind(monkeypatch, "causal_conv1d_update", "dynamax_fake_conv")
    bindings = {b.function: b for b in mamba2_bindings()}
    assert bindings["causal_conv1d_update"].implementation == "dynamax_fake_conv.causal_conv1d_update"
    assert bindings["causal_conv1d_update"].fused


def test_required_on_cuda_without_kernels_fails_naming_the_packages(monkeypatch: pytest.MonkeyPatch,
                                                                     tiny_mamba2: Backbone) -> None:
    for name, (module, _) in MAMBA2_FUNCTIONS.items():
        rebind(monkeypatch, name, f"dynamax_absent_{module}")  # as on a box without the packages
    with pytest.raises(KernelsMissing) as err:
        check_mamba2_kernels("required", torch.device("cuda"), [tiny_mamba2.model])
    message = str(err.value)
    assert "mamba-ssm" in message and "causal-conv1d" in message and "envs/cuda.yaml" in message
    assert "mamba2_chunk_scan" in message and "runtime.mamba_kernels: auto" in message
    # `auto` runs the fallback, saying so
    assert not any(b.fused for b in check_mamba2_kernels("auto", torch.device("cuda"), [tiny_mamba2.model]))


def test_required_with_every_kernel_bound_passes_on_cuda(monkeypatch: pytest.MonkeyPatch, tiny_mamba2: Backbone) -> None:
    fused = [KernelBinding(name, dist, f"{module}.ops.{name}") for name, (module, dist) in MAMBA2_FUNCTIONS.items()]
    monkeypatch.setattr(kernels, "mamba2_bindings", lambda: fused)
    assert check_mamba2_kernels("required", torch.device("cuda"), [tiny_mamba2.model]) == fused
    monkeypatch.setattr(kernels, "mamba2_bindings", lambda: [*fused[:-1], dataclasses.replace(fused[-1], implementation=TORCH_FALLBACK)])
    with pytest.raises(KernelsMissing, match=fused[-1].function):
        check_mamba2_kernels("required", torch.device("cuda"), [tiny_mamba2.model])


def test_required_on_cpu_fails_and_models_without_mamba2_are_not_checked(tiny_mamba2: Backbone,
                                                                        tiny_mistral: Backbone) -> None:
    with pytest.raises(KernelsMissing, match="run on CUDA only"):
        check_mamba2_kernels("required", "cpu", [tiny_mamba2.model])
    assert check_mamba2_kernels("required", "cuda", [tiny_mistral.model]) == []
    # a Transformer backbone with the stateful `mamba` exit classifier runs a Mamba2Mixer too
    classifier = build_classifier("mamba", tiny_mistral.model.config.hidden_size, {"head_dim": 16, "chunk_size": 64})
    with pytest.raises(KernelsMissing):
        check_mamba2_kernels("required", "cpu", [tiny_mistral.model, classifier])


def test_decoder_load_runs_the_check(smoke_config: dict, tiny_mamba2: Backbone, backbone_root: Path) -> None:
    spec = dataclasses.replace(decode_spec(smoke_config, "tiny_mamba2", "triviaqa", "full"), mamba_kernels="required")
    with pytest.raises(KernelsMissing, match="runtime.mamba_kernels is 'required'"):
        Decoder.load(spec, backbone_root / "tiny_mamba2")
    assert Decoder.load(dataclasses.replace(spec, mamba_kernels="auto"), backbone_root / "tiny_mamba2").exit_positions


def test_paper_profile_requires_the_kernels_and_a_cpu_profile_cannot(config_copy: dict) -> None:
    paper = load_profile(REPO_ROOT / "config" / "paper.yaml")
    assert decode_spec(paper, "codestral_mamba7b", "triviaqa", "full").mamba_kernels == "required"
    assert decode_spec(config_copy, "tiny_mamba2", "triviaqa", "full").mamba_kernels == "auto"
    config_copy["runtime"]["mamba_kernels"] = "required"
    with pytest.raises(ConfigError, match="runtime.mamba_kernels"):
        validate_profile(config_copy)
