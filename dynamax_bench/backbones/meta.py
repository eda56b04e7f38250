"""The metadata file of a prepared backbone folder (readable without loading torch)."""

from __future__ import annotations

from pathlib import Path

import yaml

from dynamax_bench.config import REPO_ROOT
from dynamax_bench.files import read_json

META_FILE = "dynamax_backbone.json"


def build_hint(backbone_dir: str | Path) -> str:
    """How to build a prepared backbone folder: the command for the profiles that declare its name."""
    name = Path(backbone_dir).name
    profiles = sorted((p.stem for p in (REPO_ROOT / "config").glob("*.yaml")
                       if name in ((yaml.safe_load(p.read_text()) or {}).get("backbones") or {})),
                      key=lambda stem: (stem != "default", stem))  # the embedded default first
    if not profiles:
        return (f"no profile in {REPO_ROOT / 'config'} declares a backbone named {name!r}; pass a prepared folder, "
                f"resources/backbones/<name> for a backbone of a profile")
    target = f"resources/backbones/{name}"
    hint = (f"build it from the checkout with `snakemake --cores 1 {target} --configfile config/{profiles[0]}.yaml` "
            f"(declared by {', '.join(profiles)})")
    return hint if Path(backbone_dir).as_posix().endswith(target) else f"{hint}; then use the folder {target}"


def read_backbone_meta(backbone_dir: str | Path) -> dict:
    path = Path(backbone_dir) / META_FILE
    if not path.exists():
        raise FileNotFoundError(f"no prepared backbone at {backbone_dir} (no {META_FILE}); {build_hint(backbone_dir)}")
    return read_json(path)
