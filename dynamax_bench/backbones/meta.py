"""The metadata file of a prepared backbone folder (readable without loading torch)."""

from __future__ import annotations

from pathlib import Path

from dynamax_bench.files import read_json

META_FILE = "dynamax_backbone.json"


def read_backbone_meta(backbone_dir: str | Path) -> dict:
    path = Path(backbone_dir) / META_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"no prepared backbone at {backbone_dir} (looked for {META_FILE}); build it with "
            f"`snakemake --cores 1 {backbone_dir}` (rule prepare_backbone)"
        )
    return read_json(path)
