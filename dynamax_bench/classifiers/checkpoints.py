"""Checkpoints of trained exit classifiers: one classifier per exit position, safetensors + JSON.

`<kind>.safetensors` holds tensors `exit<i>.<param>`; `<kind>.json` beside it the kind, options,
exit layers, hidden size, training hyper-parameters and held-out metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dynamax_bench.classifiers.kinds import ExitClassifier
from dynamax_bench.classifiers.registry import base_kind, build_classifier
from dynamax_bench.files import atomic_path, read_json, write_json


def checkpoint_paths(path: str | Path, kind: str | None = None) -> tuple[Path, Path]:
    """(weights, metadata) of a checkpoint given its .safetensors file, or its folder and kind."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".safetensors":
        if kind is None:
            raise ValueError(f"{path}: give the classifier's .safetensors file, or its folder and the kind")
        path = path / f"{kind}.safetensors"
    return path, path.with_suffix(".json")


def checkpoint_source(paths: str | Path | Sequence[str | Path] | None) -> Path | None:
    """What `load_classifiers` reads for a rule's classifier inputs: its one checkpoint file, or for
    a sweep of several kinds (one file per kind, all in the backbone's folder) that folder."""
    if paths is None:
        return None
    if isinstance(paths, (str, Path)):
        return Path(paths)
    folders = {Path(path).parent for path in paths}
    if len(folders) > 1:
        raise ValueError(f"classifier checkpoints in several folders {sorted(map(str, folders))}: give one backbone's")
    return folders.pop() if folders else None


def save_classifiers(path: str | Path, classifiers: list[ExitClassifier], exit_positions: list[int], info: dict,
                     kind: str | None = None) -> None:
    """One classifier per exit, in exit order, as safetensors + JSON (kind, options, layers, `info`);
    `kind`: the name to record when it is a variant of the classes' kind (e.g. mamba_k5)."""
    weights, meta = checkpoint_paths(path)
    first = classifiers[0]
    kind = kind or first.kind
    tensors = {
        f"exit{i}.{name}": tensor.detach().float().contiguous().cpu()
        for i, clf in enumerate(classifiers)
        for name, tensor in clf.state_dict().items()
    }
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp), metadata={"kind": kind})
    write_json(meta, {"kind": kind, "options": first.hparams, "hidden_size": first.hidden_size,
                      "exit_positions": list(exit_positions), **info})


def load_classifiers(path: str | Path, kind: str | None = None,
                     device: str | torch.device = "cpu") -> tuple[dict[int, ExitClassifier], dict]:
    """{exit layer: classifier in eval mode} and the checkpoint's metadata."""
    weights, meta_path = checkpoint_paths(path, kind)
    if not weights.exists() or not meta_path.exists():
        raise FileNotFoundError(
            f"no trained classifiers at {weights} (+ .json); train them with the distill rule, e.g. "
            f"`snakemake --cores 1 {weights}`"
        )
    meta = read_json(meta_path)
    if kind is not None and base_kind(meta["kind"]) != base_kind(kind):
        raise ValueError(f"{weights} holds {meta['kind']!r} classifiers, not {kind!r}")
    try:
        tensors = load_file(str(weights))
    except SafetensorError as err:  # truncated or overwritten after the DAG's start-up check
        raise ValueError(f"{weights}: damaged checkpoint ({err}); rebuild it: rm {weights} && "
                         f"snakemake --cores all {weights} --configfile <your profile>") from None
    classifiers = {}
    for i, layer in enumerate(meta["exit_positions"]):
        clf = build_classifier(meta["kind"], meta["hidden_size"], meta["options"])
        prefix = f"exit{i}."
        clf.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
        classifiers[layer] = clf.to(device).eval()
    return classifiers, meta
