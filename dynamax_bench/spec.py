"""The decode spec: everything one cell's decoding reads, built once from the profile and the method.

The path of a setting, hop by hop: the profile (config/<name>.yaml) -> `decode_spec(config, backbone,
task, method)`, called by the Snakefile for the `generate` rule's `params.spec` (so a change to
any field reruns exactly the cells it affects) -> `DecodeSpec.from_dict` in the rule's script ->
the engine -> written whole into the generation file and the cell -> tables, claims, figures and
costs read its fields; nothing downstream parses a method name again.

A method name is parsed here and only here: `full`, `prune<N>` (the last N layers dropped),
`oracle`, `ee-<kind>-<policy>-t<threshold>` (a threshold typed in), the calibrated early-exit
rows, whose threshold the `calibrate` stage chooses on the calibration split:
`ee-<kind>-<policy>-c<target>` (consistency with `full` >= target, Learn-Then-Test) and
`ee-<kind>-<policy>-p<N>` (decode savings at least those of `prune<N>`), and `spec-e<E>-k<K>`
(self-speculative decoding: K tokens drafted by exiting after layer E, verified by the layers above
it). `METHOD_PATTERN` is the one regular expression of those names; the Snakefile's `{method}`
wildcard uses it too.
"""

from __future__ import annotations

import re
from decimal import Decimal
from dataclasses import asdict, dataclass, replace
from typing import Any

METHOD_PATTERN = r"full|oracle|prune\d+|ee-[a-z0-9_]+-[a-z]+-(?:[tc]\d+(?:\.\d+)?|p\d+)|spec-e\d+-k\d+"
_METHOD = re.compile(rf"^(?:{METHOD_PATTERN})$")
FORMS = ("'full', 'prune<N>' (e.g. prune4), 'oracle', 'ee-<kind>-<policy>-t<threshold>' (e.g. ee-mamba-copy-t0.9), "
         "'ee-<kind>-<policy>-c<consistency target>' (e.g. ee-mamba-copy-c0.95), 'ee-<kind>-<policy>-p<N>' "
         "(the decode savings of prune<N>, e.g. ee-mamba-copy-p6) or 'spec-e<E>-k<K>' (e.g. spec-e20-k3)")
# What a calibrated ee row's threshold is chosen for (the letter of its name).
TARGETS = {"c": "consistency", "p": "prune"}


@dataclass(frozen=True)
class MethodSpec:
    """One row of the study: its name and what the name says."""

    name: str
    kind: str  # full | prune | oracle | ee | spec
    prune: int = 0  # layers dropped (prune)
    exit_kind: str | None = None  # exit method of the registry (ee)
    policy: str | None = None  # state policy of the skipped layers (ee)
    threshold: float | None = None  # exit when confidence >= threshold (ee)
    # a calibrated ee row: "consistency" (>= target_value with probability 1 - epsilon) or "prune"
    # (decode savings >= those of prune<target_value>); its threshold comes from the calibrate stage
    target: str | None = None
    target_value: float | None = None
    # set once the calibration is read: False when no threshold of the grid meets the target (a
    # consistency target then runs as `full`: no exit, no classifier)
    certified: bool | None = None
    draft_layer: int | None = None  # spec: the draft reads the head after this many layers (E)
    draft_tokens: int | None = None  # spec: tokens drafted per verification pass (K)

    @property
    def calibrated(self) -> bool:
        return self.target is not None

    @property
    def runs_as_full(self) -> bool:
        """A calibrated consistency target no threshold could certify: it decodes as `full`."""
        return self.kind == "ee" and self.threshold is None and self.certified is False

    @property
    def lossless(self) -> bool:
        """Its output is the full model's by construction (cells must agree with `full` on every sample)."""
        return self.kind in ("full", "oracle", "spec") or (self.kind == "prune" and self.prune == 0)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MethodSpec:
        return cls(**data)


def method_of(record: dict[str, Any]) -> MethodSpec:
    """The method of a cell or latency record, from the decode spec written into it."""
    return MethodSpec.from_dict(record["spec"]["method"])


def format_threshold(threshold: float) -> str:
    """The threshold as a method name writes it: the shortest decimal that reads back as the same
    float (Python's repr), in positional notation (1e-05 -> 0.00001, which `METHOD_PATTERN` accepts),
    so that `parse_method(ee_name(k, p, t)).threshold == t` for every t in [0, 1]."""
    return format(Decimal(repr(float(threshold) + 0.0)).normalize(), "f")  # + 0.0: -0.0 -> 0.0


def ee_name(exit_kind: str, policy: str, threshold: float) -> str:
    return f"ee-{exit_kind}-{policy}-t{format_threshold(threshold)}"


def calibrated_name(exit_kind: str, policy: str, target: str, value: float) -> str:
    """The row of a calibrated threshold: `c<consistency target>` or `p<prune level>`."""
    letter = {name: letter for letter, name in TARGETS.items()}[target]
    number = str(int(value)) if target == "prune" else format_threshold(value)
    return f"ee-{exit_kind}-{policy}-{letter}{number}"


def spec_name(draft_layer: int, draft_tokens: int) -> str:
    return f"spec-e{draft_layer}-k{draft_tokens}"


def parse_method(name: str) -> MethodSpec:
    """The one parse of a method name; an unknown name raises with the accepted forms."""
    if not _METHOD.match(name):
        raise ValueError(f"unknown method {name!r}; methods are {FORMS}")
    if name in ("full", "oracle"):
        return MethodSpec(name=name, kind=name)
    if name.startswith("prune"):
        return MethodSpec(name=name, kind="prune", prune=int(name[len("prune"):]))
    if name.startswith("spec-"):
        layer, tokens = (int(part[1:]) for part in name[len("spec-"):].split("-"))
        if layer < 1 or tokens < 1:
            raise ValueError(f"method {name!r}: spec-e<E>-k<K> drafts K >= 1 tokens after E >= 1 layers")
        if name != spec_name(layer, tokens):
            raise ValueError(f"method {name!r}: write it {spec_name(layer, tokens)!r} (no leading zeros)")
        return MethodSpec(name=name, kind="spec", draft_layer=layer, draft_tokens=tokens)
    exit_kind, policy, setting = name[len("ee-"):].rsplit("-", 2)
    value = float(setting[1:])
    if setting[0] == "p":
        return MethodSpec(name=name, kind="ee", exit_kind=exit_kind, policy=policy, target="prune",
                          target_value=value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"method {name!r}: a {'threshold' if setting[0] == 't' else 'consistency target'} "
                         "must lie in [0, 1]")
    if setting[0] == "c":
        return MethodSpec(name=name, kind="ee", exit_kind=exit_kind, policy=policy, target="consistency",
                          target_value=value)
    return MethodSpec(name=name, kind="ee", exit_kind=exit_kind, policy=policy, threshold=value)


# Dtypes whose near-tie bounds were measured (engine/neartie.py). Elsewhere the bounds are float32's
# scaled by the machine epsilon, which at bfloat16 (65,536x) makes every decision a near tie: the
# batched engine would re-decode every row at batch 1 (8 of 8 rows on an H100 at Mistral-7B shapes,
# benchmarks/results/gpu_paper_shapes.json), slower than decoding at batch 1 alone.
NEAR_TIE_MEASURED_DTYPES = ("float32",)


def batched_dtype_problem(dtype: str, batch_size: int, prefix_cache: bool) -> str | None:
    """Why the batched engine (batch_size > 1 or the prefix cache) cannot run at `dtype`, or None."""
    if (batch_size > 1 or prefix_cache) and dtype not in NEAR_TIE_MEASURED_DTYPES:
        return (f"the near-tie bounds that keep the batched engine exact are measured for "
                f"{list(NEAR_TIE_MEASURED_DTYPES)} only; at {dtype} every row would be re-decoded at batch 1, "
                "slower than batch 1 alone")
    return None


@dataclass(frozen=True)
class DecodeSpec:
    """Everything the decoding of one cell reads.

    exits: the profile's `exits` entry ({count} or {positions}); the positions it gives depend on
    the backbone's depth and are resolved when the backbone is loaded (`config.exit_positions`).
    batch_size: rows decoded together (every row's output is its batch-1 output, see the engine).
    prefix_cache: compute the prompt prefix a task's samples share once.
    """

    backbone: str
    family: str
    task: str
    method: MethodSpec
    exits: dict[str, Any]
    repetition_penalty: float
    max_new_tokens: int
    batch_size: int
    prefix_cache: bool
    dtype: str
    device: str
    seed: int
    mamba_kernels: str = "auto"  # runtime.mamba_kernels: `required` fails where Mamba-2 would run the PyTorch fallback

    def __post_init__(self) -> None:
        problem = batched_dtype_problem(self.dtype, self.batch_size, self.prefix_cache)
        if problem:
            raise ValueError(f"batch_size {self.batch_size}, prefix_cache {self.prefix_cache} at dtype {self.dtype}: "
                             f"{problem}; decode at batch_size 1 without the prefix cache, or in float32")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecodeSpec:
        return cls(**{**data, "method": MethodSpec.from_dict(data["method"])})


@dataclass(frozen=True)
class TaskSpec:
    """Which samples of a task a profile evaluates, and how their prompts are built."""

    name: str
    source: dict[str, Any]
    limit: int | None
    num_fewshot: int
    fewshot_source: dict[str, Any] | None
    options: dict[str, Any]  # task-specific keys (CoQA's `turns`)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        return cls(**data)


TASK_COMMON_KEYS = ("source", "limit", "max_new_tokens", "num_fewshot", "fewshot_source", "early_exit")


def task_spec(config: dict, task: str) -> TaskSpec:
    """A task's sample selection: its own `limit`, else the profile-wide `limit` (lm-eval's --limit)."""
    entry = config["tasks"][task]
    limit = entry.get("limit")
    return TaskSpec(
        name=task,
        source=entry["source"],
        limit=limit if limit is not None else config.get("limit"),
        num_fewshot=entry.get("num_fewshot", 0),
        fewshot_source=entry.get("fewshot_source"),
        options={k: v for k, v in entry.items() if k not in TASK_COMMON_KEYS},
    )


def max_new_tokens(config: dict, task: str) -> int:
    """A task's own `max_new_tokens`, else the profile-wide `generation.max_new_tokens`."""
    own = config["tasks"][task].get("max_new_tokens")
    return own if own is not None else config["generation"]["max_new_tokens"]


def decode_spec(config: dict, backbone: str, task: str, method: str) -> DecodeSpec:
    """The spec of one cell, from the profile. A `spec-*` method decodes at batch 1 without the prefix
    cache whatever the profile batches (rows accept drafts of different lengths; engine/speculative.py)."""
    generation, runtime = config["generation"], config["runtime"]
    entry = config["backbones"][backbone]
    parsed = parse_method(method)
    batch_one = parsed.kind == "spec"
    return DecodeSpec(
        backbone=backbone,
        family=entry["family"],
        task=task,
        method=parsed,
        exits=entry.get("exits") or {"count": 4},
        repetition_penalty=float(generation.get("repetition_penalty", 1.0)),
        max_new_tokens=max_new_tokens(config, task),
        batch_size=1 if batch_one else int(generation.get("batch_size", 1)),
        prefix_cache=False if batch_one else bool(generation.get("prefix_cache", False)),
        dtype=runtime["dtype"],
        device=runtime["device"],
        seed=config["seed"],
        mamba_kernels=runtime["mamba_kernels"],
    )


def latency_spec(config: dict, backbone: str, method: str) -> DecodeSpec:
    """The spec the latency rule times: batch 1 (the paper's setting), no prefix cache, its own
    task and length."""
    latency = config["latency"]
    spec = decode_spec(config, backbone, latency["task"], method)
    return replace(spec, max_new_tokens=latency["max_new_tokens"], batch_size=1, prefix_cache=False)


def baseline_methods(backbone: dict, oracle: bool = True) -> list[str]:
    """The rows every backbone gets: full, its static pruning levels, and the oracle."""
    names = ["full"] + [f"prune{n}" for n in sorted(backbone.get("prune", []))]
    if oracle:
        names.append("oracle")
    return names


def speculative_methods(config: dict, backbone: str) -> list[str]:
    """A backbone's self-speculative rows: one per entry {exit: E, draft: K} of `methods.speculative.<backbone>`."""
    entries = config["methods"].get("speculative", {}).get(backbone, [])
    return [spec_name(entry["exit"], entry["draft"]) for entry in entries]


def ee_methods(config: dict, backbone: str) -> list[str]:
    """Early-exit rows of a backbone: every classifier kind x its policies x every threshold."""
    if not config["methods"]["early_exit"]:
        return []
    spec, classifiers = config["backbones"][backbone], config["classifiers"]
    return [
        ee_name(kind, policy, threshold)
        for kind in classifiers["kinds"]
        for policy in spec["policies"]
        for threshold in classifiers["thresholds"]
    ]
