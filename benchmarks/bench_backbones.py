"""Backbones for the engine benchmarks, prepared offline when missing.

SmolLM2 comes from the DAG's folder (resources/backbones/smollm2) when it exists, else it is
prepared from config/default.yaml into benchmarks/out/backbones/. The smoke profile's tiny models
are prepared there at their seeded random initialisation (as the tests' fixtures do: the engine's
numerics, not a model's quality, are what the benchmarks measure).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from dynamax_bench.backbones.prepare import Backbone, load_backbone, prepare_backbone
from dynamax_bench.config import REPO_ROOT
from dynamax_bench.profile_checks import load_profile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PROFILES = {"smollm2": "default", "tiny_mistral": "smoke", "tiny_mamba2": "smoke"}
OUT = REPO_ROOT / "benchmarks" / "out" / "backbones"


def backbone(name: str) -> Backbone:
    pipeline = REPO_ROOT / "resources" / "backbones" / name
    if name == "smollm2" and pipeline.exists():
        return load_backbone(pipeline)
    out = OUT / name
    if not out.exists():
        config = load_profile(REPO_ROOT / "config" / f"{PROFILES[name]}.yaml")
        spec = copy.deepcopy(config["backbones"][name])
        if spec["source"]["kind"] == "distilled":
            teacher = config["backbones"][spec["source"]["teacher"]]["source"]
            spec["source"] = {"kind": "random", "architecture": spec["source"]["architecture"],
                              "config": spec["source"]["config"], "tokenizer": teacher["tokenizer"]}
        prepare_backbone(name, spec, Path(out), seed=config["seed"], offline=True)
    return load_backbone(out)
