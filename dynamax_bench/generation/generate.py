"""The `generate` rule: one backbone, one task, one method -> one JSONL of generations."""

from __future__ import annotations

import logging
from pathlib import Path

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.classifiers.kinds import load_classifiers
from dynamax_bench.engine import ClassifierRule, Strategy
from dynamax_bench.classifiers.registry import is_trained, training_free_rule
from dynamax_bench.lmeval.model import DynamaxLM, build_requests, trace_record
from dynamax_bench.files import write_jsonl
from dynamax_bench.spec import Method, check_method_for
from dynamax_bench.generation.tasks import load_samples

log = logging.getLogger(__name__)


def build_strategy(method: Method, backbone: Backbone, classifiers: str | Path | None = None) -> Strategy:
    """The engine strategy of a method; `ee-*` methods read their trained exit classifiers
    from `classifiers` (the distill rule's output for this backbone)."""
    check_method_for(method, backbone.family, backbone.num_layers)
    if method.kind == "full":
        return Strategy.full()
    if method.kind == "prune":
        return Strategy.prune(backbone.num_layers, method.prune)
    if method.kind == "oracle":
        return Strategy(oracle=True)
    if not is_trained(method.exit_kind):
        return Strategy.early_exit(training_free_rule(method.exit_kind, method.threshold), method.policy)
    if classifiers is None:
        raise ValueError(f"method {method.name!r} needs the trained {method.exit_kind!r} classifiers (distill rule)")
    trained, _ = load_classifiers(classifiers, method.exit_kind, backbone.model.device)
    dtype = backbone.model.dtype
    return Strategy.early_exit(ClassifierRule({e: c.to(dtype) for e, c in trained.items()}, method.threshold),
                               method.policy)


def max_new_tokens(config: dict, task_name: str) -> int:
    """A task's own `max_new_tokens`, else the profile-wide `generation.max_new_tokens`."""
    own = config["tasks"][task_name].get("max_new_tokens")
    return own if own is not None else config["generation"]["max_new_tokens"]


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
