"""The `generate` rule: one backbone, one task, one method -> one JSONL of generations."""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from .backbones import Backbone, load_backbone
from .classifiers import load_classifiers
from .config import exit_positions
from .engine import ClassifierRule, EarlyExitGenerator, Strategy
from .exit_methods import is_trained, training_free_rule
from .io import write_jsonl
from .methods import Method, check_method_for, parse_method
from .tasks import get_task

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


def make_generator(config: dict, backbone: Backbone, task_name: str) -> EarlyExitGenerator:
    spec = config["backbones"][backbone.meta["name"]]
    generation = config["generation"]
    return EarlyExitGenerator(
        backbone.model,
        backbone.tokenizer,
        exit_layers=exit_positions(spec, backbone.num_layers),
        max_new_tokens=generation["max_new_tokens"],
        repetition_penalty=generation.get("repetition_penalty", 1.0),
        stop_strings=get_task(task_name).stop_strings,
    )


def generate_cell(
    config: dict,
    backbone_dir: str | Path,
    task_name: str,
    method_name: str,
    out_path: str | Path,
    classifiers: str | Path | None = None,
) -> None:
    """Generate every sample of a task with one method and write the per-sample records."""
    method = parse_method(method_name)
    backbone = load_backbone(backbone_dir, config["runtime"]["device"], config["runtime"]["dtype"])
    strategy = build_strategy(method, backbone, classifiers)
    generator = make_generator(config, backbone, task_name)
    if isinstance(strategy.rule, ClassifierRule) and sorted(strategy.rule.classifiers) != sorted(generator.points):
        raise ValueError(
            f"{classifiers}: classifiers sit at layers {sorted(strategy.rule.classifiers)} but the config places "
            f"exits at {sorted(generator.points)}; retrain them (the distill rule reruns when the exits change)"
        )
    task_cfg = config["tasks"][task_name]
    samples = get_task(task_name).load(
        task_cfg["source"], task_cfg.get("limit"), task_cfg.get("num_fewshot", 0), task_cfg.get("fewshot_source")
    )
    log.info("%s / %s / %s: %d samples, exits at %s", backbone.meta["name"], task_name, method.name,
             len(samples), sorted(generator.points))
    records = []
    for sample in tqdm(samples, desc=f"{backbone.meta['name']}/{task_name}/{method.name}", unit="sample"):
        out = generator.generate(sample.prompt, strategy)
        records.append(
            {
                "id": sample.id,
                "prompt": sample.prompt,
                "output": out.text,
                "token_ids": out.token_ids,
                "exit_layers": out.exit_layers,
                "stop_reason": out.stop_reason,
            }
        )
    write_jsonl(out_path, records)
