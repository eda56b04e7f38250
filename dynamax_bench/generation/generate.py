"""The `generate` rules: one backbone, one task, one method (or the thresholds of one exit kind and
policy, decoded together) -> one JSONL of generations per method.

The file's first line is its header: the decode spec and task spec it was made with, the exit
positions they resolved to, the digests of the weights it was decoded with (`artefacts`: backbone,
and the classifiers with the oracle store they were distilled from) and, for a batched run, its
agreement with batch 1 (engine/correctness.py); every further line is one sample (id, prompt,
prompt_tokens, output, token_ids, layers_executed, stop_reason).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dynamax_bench.artefacts import artefact, safetensors_digest, weights_digest
from dynamax_bench.files import read_json, read_jsonl, write_jsonl
from dynamax_bench.generation.tasks import load_samples
from dynamax_bench.spec import DecodeSpec, TaskSpec

if TYPE_CHECKING:  # the score rule reads generations without loading torch and transformers
    from dynamax_bench.engine import Generation

log = logging.getLogger(__name__)
HEADER_KEY = "decode_spec"


def trace_record(prompt: str, generation: Generation) -> dict[str, Any]:
    """The per-sample fields later stages read: prompt, its length in tokens (the cost ledger
    counts the whole prompt for every sample), output and the per-token trace; a self-speculative
    generation also its rounds (`speculation`: tokens drafted and accepted per verification pass)."""
    record = {
        "prompt": prompt,
        "prompt_tokens": len(generation.prompt_ids),
        "output": generation.text,
        "token_ids": generation.token_ids,
        "layers_executed": generation.exit_layers,
        "stop_reason": generation.stop_reason,
    }
    if hasattr(generation, "drafted"):  # engine/speculative.py's SpeculativeGeneration
        record["speculation"] = {"drafted": generation.drafted, "accepted": generation.accepted}
    return record


def classifier_artefacts(spec: DecodeSpec, classifiers: str | Path | None) -> dict[str, dict[str, str]]:
    """The trained classifiers a spec decodes with and the oracle store they were distilled from
    (its digest, recorded by the distill rule in the checkpoint's JSON); none for other methods."""
    from dynamax_bench.classifiers.checkpoints import checkpoint_paths
    from dynamax_bench.classifiers.registry import exit_method

    kind = spec.method.exit_kind
    if kind is None or not exit_method(kind).trained or classifiers is None:
        return {}
    weights, meta = checkpoint_paths(classifiers, exit_method(kind).checkpoint)
    found = {"classifier": artefact(f"{spec.backbone}/{kind}", safetensors_digest(weights))}
    oracle = read_json(meta).get("oracle")
    return {**found, "oracle": oracle} if oracle else found


def write_generations(path: str | Path, header: dict[str, Any], records: list[dict]) -> None:
    if HEADER_KEY not in header:
        raise ValueError(f"a generations header needs its {HEADER_KEY!r}")
    write_jsonl(path, [header, *records])


def read_generations(path: str | Path) -> tuple[dict[str, Any], list[dict]]:
    """(header, sample records) of a generations file."""
    lines = read_jsonl(path)
    if not lines or HEADER_KEY not in lines[0]:
        raise ValueError(f"{path}: no header line with the decode spec; regenerate it with the generate rule")
    return lines[0], lines[1:]


def generate_cell(
    spec: DecodeSpec,
    task_spec: TaskSpec,
    backbone_dir: str | Path,
    out_path: str | Path,
    classifiers: str | Path | None = None,
) -> None:
    """Generate every sample of a task with one method and write the generations file."""
    generate_cells([spec], task_spec, backbone_dir, [out_path], classifiers)


def generate_cells(
    specs: Sequence[DecodeSpec],
    task_spec: TaskSpec,
    backbone_dir: str | Path,
    out_paths: Sequence[str | Path],
    classifiers: str | Path | None = None,
    full_generations: str | Path | None = None,
) -> None:
    """One generations file per spec (a generate job: one method, or the thresholds of an exit kind
    under one policy): the backbone, the classifiers and each batch's prompt pass are shared, and
    every file is what its spec alone would write. A calibrated row no threshold could certify runs
    as the full model: its file is `full_generations`' records under its own header (the full model's
    greedy output, decoded once)."""
    from dynamax_bench.generation.decoder import Decoder, decode_each

    if len(specs) != len(out_paths):
        raise ValueError(f"{len(specs)} decode specs but {len(out_paths)} output files")
    as_full = [(spec, out) for spec, out in zip(specs, out_paths) if spec.method.runs_as_full]
    if as_full:
        write_as_full(as_full, task_spec, full_generations)
    decoded_specs = [spec for spec in specs if not spec.method.runs_as_full]
    if not decoded_specs:
        return
    out_paths = [out for spec, out in zip(specs, out_paths) if not spec.method.runs_as_full]
    unique: dict[str, DecodeSpec] = {}
    for spec in decoded_specs:
        unique.setdefault(decode_key(spec), spec)  # the first row of each decode decodes for the others
    decoders = Decoder.load_all(list(unique.values()), backbone_dir, classifiers)
    task, samples = load_samples(task_spec)
    log.info("%s / %s / %s: %d samples, exits at %s, up to %d new tokens, batch %d (%d decodes)",
             decoded_specs[0].backbone, task.name, ", ".join(spec.method.name for spec in decoded_specs), len(samples),
             decoders[0].exit_positions, decoded_specs[0].max_new_tokens, decoded_specs[0].batch_size, len(unique))
    backbone = artefact(decoded_specs[0].backbone, weights_digest(backbone_dir))
    decoded = dict(zip(unique, decode_each(decoders, [s.prompt for s in samples], task.stop_strings)))
    for spec, out_path in zip(decoded_specs, out_paths):
        generations, agreement = decoded[decode_key(spec)]
        header = {HEADER_KEY: spec.to_dict(), "task_spec": task_spec.to_dict(), "exit_positions": decoders[0].exit_positions,
                  "artefacts": {"backbone": backbone, **classifier_artefacts(spec, classifiers)},
                  "agreement": None if agreement is None else agreement.as_dict()}
        write_generations(out_path, header,
                          [{"id": s.id, **trace_record(s.prompt, g)} for s, g in zip(samples, generations)])


def decode_key(spec: DecodeSpec) -> str:
    """What a decode depends on: the spec but the row's name and calibration target, so that two targets
    calibrated to one threshold (c0.9 and c0.95 of a kind, both at 0.95) decode once."""
    method = {k: v for k, v in spec.to_dict()["method"].items() if k not in ("name", "target", "target_value", "certified")}
    return json.dumps({**spec.to_dict(), "method": method}, sort_keys=True)


def write_as_full(rows: Sequence[tuple[DecodeSpec, str | Path]], task_spec: TaskSpec,
                  full_generations: str | Path | None) -> None:
    """The files of rows that run as the full model: `full`'s records under each row's own spec."""
    if full_generations is None:
        raise ValueError(f"{rows[0][0].method.name} runs as the full model (no threshold certified): its generate job "
                         "needs the full model's generations file as input `full`")
    header, records = read_generations(full_generations)
    full_spec = DecodeSpec.from_dict(header[HEADER_KEY])
    for spec, out_path in rows:
        if replace(spec, method=full_spec.method) != full_spec or header["task_spec"] != task_spec.to_dict():
            raise ValueError(f"{full_generations} was decoded with other settings than {spec.method.name}; rerun it")
        write_generations(out_path, {**header, HEADER_KEY: spec.to_dict()}, records)
