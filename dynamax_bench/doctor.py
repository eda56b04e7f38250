"""Damaged checkpoints, found before any job runs: header and size checks of the safetensors files
a run reads (backbone weights, classifier checkpoints, oracle store shards).

Why before: a damaged file that a job later fails to read is newer than the outputs made from it,
so Snakemake first plans to rerun (and deletes) every output of every job that takes it as input,
whatever that output needs. The DAG runs `damaged_checkpoints` when it starts (common.smk) and stops
with one line naming the file and the command that rebuilds it; `make doctor` runs the same checks.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON naming each
tensor's byte range, then the tensors' bytes: a truncated, emptied or overwritten file fails one of
"N fits the file", "the header is JSON" and "the last tensor ends where the file ends". A flipped
bit inside the data passes: the artefact hashes of the cells see that.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dynamax_bench.config import ConfigError, load_config, backbone_names

HEADER_LIMIT = 100_000_000  # safetensors' own limit on the JSON header


@dataclass(frozen=True)
class Checkpoint:
    """A folder or file a rule writes, the safetensors files in it, and the target that rebuilds it."""

    target: Path
    files: tuple[Path, ...]


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's framing, or None when header and size agree."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"{size} bytes, shorter than the 8-byte header length"
        (length,) = struct.unpack("<Q", head)
        if length > min(HEADER_LIMIT, size - 8):
            return f"header length {length} does not fit the file of {size} bytes"
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return "its header is not JSON"
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    expected = 8 + length + max(ends, default=0)
    if expected != size:
        return f"truncated or padded: its header describes {expected} bytes, the file has {size}"
    return None


def checkpoints(config: dict, root: Path = Path(".")) -> Iterator[Checkpoint]:
    """The prepared checkpoints of a profile that exist under `root` (the run's working directory)."""
    results = Path("results") / config["profile"]
    for backbone in backbone_names(config):
        folders = {Path("resources/backbones") / backbone: "*.safetensors",
                   results / "oracle" / backbone: "*.safetensors"}
        for target, pattern in folders.items():
            if (root / target).is_dir():
                yield Checkpoint(target, tuple(sorted((root / target).glob(pattern))))
        for weights in sorted((root / results / "classifiers" / backbone).glob("*.safetensors")):
            yield Checkpoint(weights.relative_to(root), (weights,))


def rebuild_command(target: Path, configfile: str) -> str:
    remove = "rm -r" if target.suffix != ".safetensors" else "rm"
    return f"{remove} {target} && snakemake --cores all {target} --configfile {configfile}"


def damaged_checkpoints(config: dict, configfile: str, root: Path = Path(".")) -> list[str]:
    """One line per damaged file: the file, what is wrong, and the command that rebuilds it."""
    found = []
    for checkpoint in checkpoints(config, root):
        for path in checkpoint.files:
            problem = safetensors_problem(path)
            if problem:
                found.append(f"{path}: damaged checkpoint ({problem}); rebuild it: "
                             f"{rebuild_command(checkpoint.target, configfile)}")
    return found


class DamagedCheckpoint(ConfigError):
    """A checkpoint the run would read is damaged (the message names it and its rebuild command)."""


def check_checkpoints(config: dict, configfile: str, root: Path = Path(".")) -> None:
    """Stop on the first damaged checkpoint, counting the others (`make doctor` lists them all)."""
    found = damaged_checkpoints(config, configfile, root)
    if found:
        more = f" ({len(found) - 1} more damaged: make doctor lists them)" if len(found) > 1 else ""
        raise DamagedCheckpoint(found[0] + more)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check the checkpoints of a profile's run for damage.")
    parser.add_argument("--configfile", default="config/default.yaml", help="the profile (default: %(default)s)")
    parser.add_argument("--directory", type=Path, default=Path("."), help="the run's working directory")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.configfile)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    found = damaged_checkpoints(config, args.configfile, args.directory)
    for line in found:
        print(line, file=sys.stderr)
    files = sum(len(c.files) for c in checkpoints(config, args.directory))
    print(f"doctor: {len(found)} damaged of {files} checkpoint files of profile {config['profile']}"
          + (f" under {args.directory}" if args.directory != Path(".") else ""))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
