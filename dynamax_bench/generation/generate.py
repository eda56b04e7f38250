"""The `generate` rule: one backbone, one task, one method -> one JSONL of generations.

The file's first line is its header: the decode spec and task spec it was made with, the exit
positions they resolved to and, for a batched run, its agreement with batch 1 (engine/correctness.py); every further line is one sample (id, prompt, prompt_tokens, output,
token_ids, exit_layers, stop_reason).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dynamax_bench.files import read_jsonl, write_jsonl
from dynamax_bench.generation.tasks import load_samples
from dynamax_bench.spec import DecodeSpec, TaskSpec

if TYPE_CHECKING:  # the score rule reads generations without loading torch and transformers
    from dynamax_bench.engine import Generation

log = logging.getLogger(__name__)
HEADER_KEY = "decode_spec"


def trace_record(prompt: str, generation: Generation) -> dict[str, Any]:
    """The per-sample fields later stages read: prompt, its length in tokens (the cost ledger
    counts the whole prompt for every sample), output and the per-token trace."""
    return {
        "prompt": prompt,
        "prompt_tokens": len(generation.prompt_ids),
        "output": generation.text,
        "token_ids": generation.token_ids,
        "exit_layers": generation.exit_layers,
        "stop_reason": generation.stop_reason,
    }


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
    from dynamax_bench.generation.decoder import Decoder

    decoder = Decoder.load(spec, backbone_dir, classifiers)
    task, samples = load_samples(task_spec)
    log.info("%s / %s / %s: %d samples, exits at %s, up to %d new tokens, batch %d", spec.backbone, task.name,
             spec.method.name, len(samples), decoder.exit_layers, spec.max_new_tokens, spec.batch_size)
    generations, agreement = decoder.decode([s.prompt for s in samples], task.stop_strings)
    header = {HEADER_KEY: spec.to_dict(), "task_spec": task_spec.to_dict(), "exit_layers": decoder.exit_layers,
              "agreement": None if agreement is None else agreement.as_dict()}
    write_generations(out_path, header, [{"id": s.id, **trace_record(s.prompt, g)} for s, g in zip(samples, generations)])
