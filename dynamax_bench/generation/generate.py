"""The `generate` rule: one backbone, one task, one method -> one JSONL of generations."""

from __future__ import annotations

import logging
from pathlib import Path

from dynamax_bench.lmeval.model import DynamaxLM, build_requests, trace_record
from dynamax_bench.files import write_jsonl
from dynamax_bench.spec import max_new_tokens
from dynamax_bench.generation.tasks import load_samples

log = logging.getLogger(__name__)


def generate_cell(
    config: dict,
    backbone_dir: str | Path,
    task_name: str,
    method_name: str,
    out_path: str | Path,
    classifiers: str | Path | None = None,
) -> None:
    """Generate every sample of a task with one method through the `dynamax` lm-eval model and
    write the per-sample records (id, prompt, output, token_ids, exit_layers, stop_reason)."""
    lm = DynamaxLM.from_profile(config, backbone_dir, method_name, classifiers)
    task, samples = load_samples(config, task_name)
    requests = build_requests(task, samples, max_new_tokens(config, task_name))
    log.info("%s / %s / %s: %d samples, exits at %s, up to %d new tokens", lm.backbone.meta["name"], task_name,
             method_name, len(samples), lm.exit_layers, max_new_tokens(config, task_name))
    generations = lm.generate_traced(requests)
    write_jsonl(out_path, [{"id": s.id, **trace_record(s.prompt, g)} for s, g in zip(samples, generations)])
