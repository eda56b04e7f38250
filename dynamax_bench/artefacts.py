"""Content hashes of the artefacts a cell is made from: backbone weights, classifier weights, the
oracle store behind them, and the task's samples.

The regression gate demands the reference's exact tokens only where these inputs are the
reference's: a backbone trained on another processor has other weights, so its cells' tokens may
legitimately differ, while a cell whose inputs are unchanged must reproduce exactly
(dynamax_bench/reporting/check.py). A digest covers what changes behaviour and nothing else: a
safetensors file's tensors (names, dtypes, shapes and bytes), not its free-form metadata.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

DIGEST_CHARS = 16  # hex digits kept, as for the token hash: a regression gate, not a signature
_CHUNK = 1 << 24
_HEADER_SIZE = struct.Struct("<Q")  # safetensors: little-endian u64 header length, JSON header, data


def _hex(digest: Any) -> str:
    return digest.hexdigest()[:DIGEST_CHARS]


def safetensors_digest(path: str | Path) -> str:
    """sha256 of one safetensors file's tensors: its header without `__metadata__`, then its data bytes."""
    path = Path(path)
    with path.open("rb") as stream:
        raw = stream.read(_HEADER_SIZE.size)
        if len(raw) != _HEADER_SIZE.size:
            raise ValueError(f"{path}: not a safetensors file (shorter than its header length); rebuild it")
        (length,) = _HEADER_SIZE.unpack(raw)
        try:
            header = json.loads(stream.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"{path}: damaged safetensors header; rebuild the file") from None
        header.pop("__metadata__", None)
        digest = hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return _hex(digest)


def combined_digest(parts: Mapping[str, str]) -> str:
    """One digest of named digests (a folder's files), independent of the order they are given in."""
    return _hex(hashlib.sha256(json.dumps(dict(sorted(parts.items())), separators=(",", ":")).encode()))


def weights_digest(folder: str | Path) -> str:
    """The digest of a model folder's weights: every `*.safetensors` file in it (sharded or not)."""
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no .safetensors weights to hash; rebuild the folder")
    return combined_digest({path.name: safetensors_digest(path) for path in files})


def samples_digest(samples: Iterable[Any]) -> str:
    """sha256 of a task's samples as generation and scoring read them: id, prompt text and target."""
    canonical = json.dumps([[s.id, s.prompt, s.target] for s in samples], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False, default=str)
    return _hex(hashlib.sha256(canonical.encode()))


def artefact(name: str, digest: str) -> dict[str, str]:
    """A cell's record of one artefact: what it is (e.g. `mamba2`, `mamba2/calm`, `coqa`) and its digest."""
    return {"name": name, "sha256": digest}
