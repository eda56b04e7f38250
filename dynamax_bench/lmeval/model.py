"""The `dynamax` model of lm-evaluation-harness: early-exit greedy generation behind `generate_until`.

Importing this module registers the model. lm-eval 0.4.13 looks models up only in its own
registry (no plugin entry points), so the command line goes through `dynamax-lm-eval`
(`python -m dynamax_bench.lmeval.cli`), which is lm-eval's CLI with this module imported:

    python -m dynamax_bench.lmeval.cli --model dynamax \\
        --model_args backbone=resources/backbones/smollm2,method=ee-mamba-copy-t0.9 \\
        --tasks dynamax_triviaqa --include_path dynamax_bench/lmeval/tasks

The DAG's `generate` rule builds the same model (`DynamaxLM.from_profile`) and runs lm-eval
`Instance`s built from the project's tasks through `generate_traced`, the function behind
`generate_until`, keeping the per-token trace (exit layer of every token).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lm_eval.models  # noqa: F401  (registers lm-eval's own models before ours: get_model() skips them otherwise)
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import normalize_gen_kwargs
import torch
from tqdm import tqdm

from dynamax_bench.backbones.prepare import load_backbone
from dynamax_bench.config import exit_positions
from dynamax_bench.engine import EarlyExitGenerator, Generation
from dynamax_bench.files import write_jsonl
from dynamax_bench.backbones.meta import read_backbone_meta
from dynamax_bench.generation.strategy import build_strategy
from dynamax_bench.spec import ee_name, parse_method
from dynamax_bench.generation.tasks import Sample, Task

log = logging.getLogger(__name__)

NO_LOGLIKELIHOOD = (
    "the dynamax model only generates: early exit decides, for each token it generates, where to "
    "leave the backbone, so it has no meaning for a log-likelihood request, which scores given tokens "
    "in one teacher-forced pass. Run loglikelihood and multiple-choice tasks (e.g. truthfulqa_mc1) with "
    "lm-eval's `hf` model, and generate_until tasks (truthfulqa_gen, coqa, triviaqa) with `dynamax`."
)


def parse_exits(exits: int | str | Sequence[int], num_layers: int) -> list[int]:
    """Exit positions from a count (4), positions joined by ':' ('15:20:24:29') or a list."""
    if isinstance(exits, str) and ":" in exits:
        spec: dict = {"exits": {"positions": [int(p) for p in exits.split(":")]}}
    elif isinstance(exits, (int, str)):
        spec = {"exits": {"count": int(exits)}}
    else:
        spec = {"exits": {"positions": list(exits)}}
    return exit_positions(spec, num_layers)


def lm_eval_device(device: str | None) -> str:
    """The device to load on. lm-eval's CLI passes cuda:0 unless told otherwise; like its `hf` model,
    fall back to the CPU then when torch sees no GPU. Any other device is taken as asked."""
    if device is None:
        return "auto"
    if device == "cuda:0" and not torch.cuda.is_available():
        log.warning("device cuda:0 (lm-eval's default) asked but torch sees no CUDA GPU; using the CPU")
        return "cpu"
    return device


def trace_record(prompt: str, generation: Generation) -> dict[str, Any]:
    """The per-sample fields later stages read: prompt, output and the per-token trace."""
    return {
        "prompt": prompt,
        "output": generation.text,
        "token_ids": generation.token_ids,
        "exit_layers": generation.exit_layers,
        "stop_reason": generation.stop_reason,
    }


def build_requests(task: Task, samples: list[Sample], max_new_tokens: int) -> list[Instance]:
    """lm-eval generate_until requests for a task's samples, as its ConfigurableTask builds them."""
    gen_kwargs = {"until": list(task.stop_strings), "max_gen_toks": max_new_tokens, "do_sample": False}
    return [
        Instance(
            request_type="generate_until", doc=sample.target, arguments=(sample.prompt, dict(gen_kwargs)),
            idx=0, metadata=(task.name, index, 1),
        )
        for index, sample in enumerate(samples)
    ]


@register_model("dynamax")
class DynamaxLM(LM):
    """A prepared backbone decoding greedily with one method of the study.

    Model arguments: backbone (a prepared folder), method (full, prune<N>, oracle,
    ee-<kind>-<policy>-t<threshold>; or give kind, policy and threshold), classifiers (the distill
    rule's folder, for ee methods), exits (a count or positions 'a:b:c'), repetition_penalty,
    max_gen_toks (when a request sets none), device, dtype, trace (a JSONL file that receives the
    per-token trace of every request).
    """

    def __init__(
        self,
        backbone: str,
        method: str = "full",
        kind: str | None = None,
        policy: str | None = None,
        threshold: float | None = None,
        classifiers: str | None = None,
        exits: int | str | Sequence[int] = 4,
        repetition_penalty: float = 1.0,
        max_gen_toks: int = 256,
        device: str | None = None,
        dtype: str = "float32",
        trace: str | None = None,
        batch_size: int | str | None = None,
        max_batch_size: int | None = None,
    ) -> None:
        super().__init__()

        parts = (kind, policy, threshold)
        if any(p is not None for p in parts):
            if None in parts or method != "full":
                raise ValueError(
                    "dynamax: give either method=<name> or all three of kind, policy and threshold "
                    f"(got method={method!r}, kind={kind!r}, policy={policy!r}, threshold={threshold!r})"
                )
            method = ee_name(kind, policy, float(threshold))
        if batch_size not in (None, 1, "1"):
            log.warning("dynamax decodes one sample at a time (exit decisions are per sequence); batch_size=%s ignored",
                        batch_size)
        self.backbone_dir = Path(backbone)
        self.backbone = load_backbone(self.backbone_dir, lm_eval_device(device), dtype)
        self._device = self.backbone.model.device
        self.method = parse_method(method)
        self.strategy = build_strategy(self.method, self.backbone, classifiers)
        self.exit_layers = parse_exits(exits, self.backbone.num_layers)
        trained = getattr(self.strategy.rule, "classifiers", None)
        if trained is not None and sorted(trained) != self.exit_layers:
            raise ValueError(
                f"{classifiers}: classifiers sit at layers {sorted(trained)} but the exits are {self.exit_layers}; "
                "retrain them for these exits (the distill rule reruns when a profile's exits change)"
            )
        self.repetition_penalty = float(repetition_penalty)
        self.max_gen_toks = int(max_gen_toks)
        self.trace = trace
        self._generators: dict[tuple[tuple[str, ...], int], EarlyExitGenerator] = {}

    @classmethod
    def from_profile(
        cls, config: dict, backbone_dir: str | Path, method: str, classifiers: str | Path | None = None
    ) -> DynamaxLM:
        """The model a profile's `generate` rule runs: its exits, penalty, device and dtype."""
        meta = read_backbone_meta(backbone_dir)
        spec = config["backbones"][meta["name"]]
        return cls(
            backbone=str(backbone_dir),
            method=method,
            classifiers=None if classifiers is None else str(classifiers),
            exits=exit_positions(spec, meta["num_layers"]),
            repetition_penalty=config["generation"].get("repetition_penalty", 1.0),
            max_gen_toks=config["generation"]["max_new_tokens"],
            device=config["runtime"]["device"],
            dtype=config["runtime"]["dtype"],
        )

    def generator(self, until: Sequence[str], max_gen_toks: int) -> EarlyExitGenerator:
        """One engine per (stop strings, length) pair: requests of one task share it."""
        key = (tuple(until), max_gen_toks)
        if key not in self._generators:
            self._generators[key] = EarlyExitGenerator(
                self.backbone.model,
                self.backbone.tokenizer,
                exit_layers=self.exit_layers,
                max_new_tokens=max_gen_toks,
                repetition_penalty=self.repetition_penalty,
                stop_strings=until,
            )
        return self._generators[key]

    def _unpack(self, request: Instance) -> tuple[str, list[str], int]:
        context, gen_kwargs = request.args
        kwargs = normalize_gen_kwargs(gen_kwargs or {}, self.max_gen_toks)
        if kwargs.get("do_sample"):
            raise ValueError(
                "dynamax decodes greedily (an exit is judged on the greedy token); remove do_sample/temperature "
                "from the task's generation_kwargs or from --gen_kwargs"
            )
        return context, [stop for stop in kwargs["until"] if stop], kwargs["max_gen_toks"]

    def generate_traced(self, requests: list[Instance], disable_tqdm: bool = False) -> list[Generation]:
        """Greedy early-exit generation of every request, with its per-token trace."""
        results = []
        for request in tqdm(requests, disable=disable_tqdm, desc=f"dynamax {self.method.name}", unit="request"):
            context, until, max_gen_toks = self._unpack(request)
            results.append(self.generator(until, max_gen_toks).generate(context, self.strategy))
        return results

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        generations = self.generate_traced(requests, disable_tqdm)
        for request, generation in zip(requests, generations):
            self.cache_hook.add_partial("generate_until", request.args, generation.text)
        if self.trace:
            records = [
                {"task": r.task_name, "doc_id": r.doc_id, **trace_record(r.args[0], g)}
                for r, g in zip(requests, generations)
            ]
            write_jsonl(self.trace, records)
        return [generation.text for generation in generations]

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        raise NotImplementedError(NO_LOGLIKELIHOOD)

    def loglikelihood_rolling(self, requests: list[Instance]) -> list[float]:
        raise NotImplementedError(NO_LOGLIKELIHOOD)

    @property
    def tokenizer_name(self) -> str:
        return self.backbone.tokenizer.name_or_path.replace("/", "__")

    def get_model_info(self) -> dict[str, Any]:
        """Recorded by lm-eval in its results' config."""
        return {
            "backbone": str(self.backbone_dir),
            "backbone_label": self.backbone.meta["label"],
            "method": self.method.name,
            "exit_layers": self.exit_layers,
            "repetition_penalty": self.repetition_penalty,
        }
