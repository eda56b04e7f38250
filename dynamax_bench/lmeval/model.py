"""The `dynamax` model of lm-evaluation-harness: early-exit greedy generation behind `generate_until`.

An adapter over the suite's `Decoder` (dynamax_bench/generation/decoder.py), the same object the
DAG's `generate` rule runs: model arguments become a `DecodeSpec`. Importing this module registers
the model. lm-eval 0.4.13 looks models up only in its own registry (no plugin entry points), so the
command line goes through `dynamax-lm-eval` (`python -m dynamax_bench.lmeval.cli`), which is
lm-eval's CLI with this module imported:

    python -m dynamax_bench.lmeval.cli --model dynamax \\
        --model_args backbone=resources/backbones/smollm2,method=ee-mamba-copy-t0.9 \\
        --tasks dynamax_triviaqa --include_path dynamax_bench/lmeval/tasks
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lm_eval.models  # noqa: F401  (registers lm-eval's own models before ours: get_model() skips them otherwise)
import torch
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import normalize_gen_kwargs
from lm_eval.utils import simple_parse_args_string

from dynamax_bench.backbones.meta import read_backbone_meta
from dynamax_bench.backbones.prepare import DTYPES, BackboneError, load_backbone
from dynamax_bench.classifiers.checkpoints import checkpoint_paths
from dynamax_bench.classifiers.registry import exit_method, is_trained
from dynamax_bench.engine import Generation
from dynamax_bench.files import write_jsonl
from dynamax_bench.generation.decoder import Decoder
from dynamax_bench.generation.generate import trace_record
from dynamax_bench.generation.strategy import check_method_for
from dynamax_bench.generation.tasks import Sample, Task
from dynamax_bench.spec import NEAR_TIE_MEASURED_DTYPES, DecodeSpec, batched_dtype_problem, ee_name, parse_method

log = logging.getLogger(__name__)

NO_LOGLIKELIHOOD = (
    "the dynamax model only generates: early exit decides, for each token it generates, where to "
    "leave the backbone, so it has no meaning for a log-likelihood request, which scores given tokens "
    "in one teacher-forced pass. Run loglikelihood and multiple-choice tasks (e.g. truthfulqa_mc1) with "
    "lm-eval's `hf` model, and generate_until tasks (truthfulqa_gen, coqa, triviaqa) with `dynamax`."
)


# Arguments lm-eval passes to every model from its own command-line options (None when not given):
# in --model_args as well they would reach the model twice.
LM_EVAL_OPTIONS = {"batch_size": "--batch_size", "max_batch_size": "--max_batch_size", "device": "--device"}


class ModelArgsError(ValueError):
    """A bad --model_args value, reported before any weights load (dynamax-lm-eval prints it on one line)."""


def parse_exits(exits: int | str | Sequence[int]) -> dict[str, Any]:
    """The `exits` entry of a spec from a count (4), positions joined by ':' ('15:20:24:29') or a list."""
    if isinstance(exits, str) and ":" in exits:
        return {"positions": [int(p) for p in exits.split(":")]}
    if isinstance(exits, (int, str)):
        return {"count": int(exits)}
    return {"positions": list(exits)}


def number(key: str, value: Any, kind: type[int] | type[float]) -> int | float:
    """A numeric model argument (lm-eval passes them as text), or an error naming it."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key}={value!r} is not {'an integer' if kind is int else 'a number'}") from None


def lm_eval_device(device: str | None) -> str:
    """The device to load on. lm-eval's CLI passes cuda:0 unless told otherwise; like its `hf` model,
    fall back to the CPU then when torch sees no GPU. Any other device is taken as asked."""
    if device is None:
        return "auto"
    if device == "cuda:0" and not torch.cuda.is_available():
        log.warning("device cuda:0 (lm-eval's default) asked but torch sees no CUDA GPU; using the CPU")
        return "cpu"
    return device


def batch_rows(batch_size: int | str | None, max_batch_size: int | None) -> int:
    """Rows per batch from lm-eval's --batch_size: a number, or "auto" (taken as max_batch_size, else 16:
    early exit has no memory probe to size a batch by)."""
    if batch_size is None:
        return 1
    if str(batch_size).startswith("auto"):
        return int(max_batch_size or 16)
    return int(batch_size)


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
    max_gen_toks (when a request sets none), device, dtype, batch_size (lm-eval's --batch_size; every
    row's output is its batch-1 output), prefix_cache (default: on in float32, the dtype whose
    near-tie bounds are measured; batching in another dtype is refused), seed, trace (a JSONL file
    that receives the per-token trace of every request).
    """

    @classmethod
    def check_arguments(cls, args: dict[str, Any], additional_config: dict | None = None) -> None:
        """Unknown --model_args keys, and keys lm-eval's own options also pass, named before anything loads."""
        accepted = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
        unknown = sorted(set(args) - set(accepted))
        if unknown:
            close = {key: difflib.get_close_matches(key, accepted, n=1) for key in unknown}
            hints = "".join(f" (did you mean {match[0]!r} for {key!r}?)" for key, match in close.items() if match)
            raise ModelArgsError(f"--model_args: unknown argument(s) {unknown}{hints}; the dynamax model takes "
                                 f"{[name for name in accepted if name not in LM_EVAL_OPTIONS]}, and lm-eval's "
                                 f"{', '.join(LM_EVAL_OPTIONS.values())}")
        given = {key: value for key, value in (additional_config or {}).items() if value is not None}
        twice = [key for key in args if key in LM_EVAL_OPTIONS and key in given]
        if twice:
            key = twice[0]
            raise ModelArgsError(f"--model_args {key}={args[key]}: lm-eval passes its own {LM_EVAL_OPTIONS[key]} "
                                 f"({given[key]}) to the model; drop {key} from --model_args and pass "
                                 f"{LM_EVAL_OPTIONS[key]} {args[key]}")

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> DynamaxLM:
        cls.check_arguments(simple_parse_args_string(arg_string), additional_config)
        return super().create_from_arg_string(arg_string, additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict[str, Any], additional_config: dict | None = None) -> DynamaxLM:
        cls.check_arguments(arg_dict, additional_config)
        return super().create_from_arg_obj(arg_dict, additional_config)

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
        prefix_cache: bool | None = None,
        seed: int = 1234,
    ) -> None:
        super().__init__()

        try:  # every argument is checked before the weights load
            method_spec = parse_method(self.method_name(method, kind, policy, threshold))
            exits_spec = parse_exits(exits)
            repetition_penalty = number("repetition_penalty", repetition_penalty, float)
            max_gen_toks, seed = number("max_gen_toks", max_gen_toks, int), number("seed", seed, int)
            if method_spec.kind == "ee":
                exit_method(method_spec.exit_kind)  # a registered kind, or the known ones
        except ValueError as err:
            raise ModelArgsError(f"--model_args: {err}") from None
        if method_spec.kind == "ee" and is_trained(method_spec.exit_kind):
            if classifiers is None or not checkpoint_paths(classifiers, method_spec.exit_kind)[0].exists():
                raise ModelArgsError(
                    f"--model_args: method {method_spec.name} needs the trained {method_spec.exit_kind} classifiers: "
                    f"pass classifiers=results/<profile>/classifiers/<backbone> (the distill rule's folder; "
                    f"got {classifiers!r})")
        if dtype not in DTYPES:
            raise ModelArgsError(f"--model_args dtype={dtype!r}: use one of {sorted(DTYPES)}")
        rows = batch_rows(batch_size, max_batch_size)
        if prefix_cache is None:  # on where the batched engine may run
            prefix_cache = dtype in NEAR_TIE_MEASURED_DTYPES
        problem = batched_dtype_problem(dtype, rows, bool(prefix_cache))
        if problem:
            raise ModelArgsError(f"--model_args dtype={dtype} with batch size {rows} and prefix_cache={bool(prefix_cache)}: "
                                 f"{problem}; pass --batch_size 1 and prefix_cache=False, or dtype=float32")
        try:  # the policy against the backbone's family, from its metadata file (no weights yet)
            check_method_for(method_spec, read_backbone_meta(backbone)["family"])
        except ValueError as err:
            raise ModelArgsError(f"--model_args: {err}") from None
        except FileNotFoundError as err:  # no prepared backbone at that path
            raise BackboneError(str(err)) from None
        self.backbone_dir = Path(backbone)
        loaded = load_backbone(self.backbone_dir, lm_eval_device(device), dtype)
        self.spec = DecodeSpec(
            backbone=loaded.meta["name"],
            family=loaded.family,
            task="lm-eval",
            method=method_spec,
            exits=exits_spec,
            repetition_penalty=repetition_penalty,
            max_new_tokens=max_gen_toks,
            batch_size=rows,
            prefix_cache=bool(prefix_cache),
            dtype=dtype,
            device=str(loaded.model.device),
            seed=seed,
        )
        self.decoder = Decoder.for_backbone(self.spec, loaded, classifiers)
        self.backbone = loaded
        self.method = self.spec.method
        self.exit_positions = self.decoder.exit_positions
        self.max_gen_toks = max_gen_toks
        self.trace = trace

    @staticmethod
    def method_name(method: str, kind: str | None, policy: str | None, threshold: float | str | None) -> str:
        """The method's name from `method`, or from all three of kind, policy and threshold."""
        parts = (kind, policy, threshold)
        if all(p is None for p in parts):
            return method
        if None in parts or method != "full":
            raise ValueError(
                "give either method=<name> or all three of kind, policy and threshold "
                f"(got method={method!r}, kind={kind!r}, policy={policy!r}, threshold={threshold!r})"
            )
        return ee_name(kind, policy, number("threshold", threshold, float))

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
        """Greedy early-exit generation of every request, with its per-token trace; requests that
        share stop strings and length are decoded together."""
        unpacked = [self._unpack(request) for request in requests]
        groups: dict[tuple[tuple[str, ...], int], list[int]] = {}
        for index, (_, until, max_gen_toks) in enumerate(unpacked):
            groups.setdefault((tuple(until), max_gen_toks), []).append(index)
        results: list[Generation | None] = [None] * len(requests)
        for (until, max_gen_toks), indices in groups.items():
            prompts = [unpacked[i][0] for i in indices]
            for index, generation in zip(indices, self.decoder.generate(prompts, until, max_gen_toks, disable_tqdm)):
                results[index] = generation
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
            "exit_positions": self.exit_positions,
            "decode_spec": self.spec.to_dict(),
        }
