"""The job plan of a profile: which files the DAG makes, which job makes each, and what each job reads.

The rule files (workflow/rules/*.smk) are thin: their outputs, inputs, params and target lists call
one `Plan`, built from the validated profile in workflow/rules/common.smk as
`PLAN = Plan.from_config(config)`. What the study holds (backbones, tasks, methods, sweeps, baseline
groups) and where each file lives is decided here, where plain unit tests reach it
(tests/test_plan.py) without a Snakemake process, and without torch: the Snakefile imports this
module in every Snakemake process.

Extending the study:
- a method family: its name form in `spec.py` (`METHOD_PATTERN`, `parse_method`), its names in
  `Plan.methods` (which cells exist), what its jobs read beyond the backbone in
  `Plan.method_inputs`; the rule that makes it is `generate` unless a grouped rule claims it;
- a stage (e.g. a threshold calibration between distill and generate): a path method here, its
  files in the inputs of the stage that reads them (`Plan.method_inputs`) or in a target list,
  and one rule file that calls them.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

from dataclasses import replace

from dynamax_bench.classifiers.registry import base_kind, exit_method, is_trained
from dynamax_bench.config import ConfigError
from dynamax_bench.profile_checks import calibration_split, prune_problem
from dynamax_bench.spec import (
    baseline_methods,
    calibrated_name,
    decode_spec,
    ee_methods,
    ee_name,
    latency_spec,
    parse_method,
    speculative_methods,
    task_spec,
)

# The keys of the `distill` section that train a classifier (rules select_top_k, distill and
# exit_weight_ablation read them): a change reruns exactly those jobs.
TRAINING_SETTINGS = ("epochs", "batch_size", "learning_rate", "weight_decay", "balance_classes", "exit_weights",
                     "share_parameters", "validation_fraction", "test_fraction")
# The keys of the `latency` section every latency job reads besides its task and length.
LATENCY_SETTINGS = ("prompts", "warmup", "repeats", "throughput_batch")
BACKBONES_DIR = "resources/backbones"


class Plan:
    """The jobs and files of one validated profile (schema defaults filled in)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.profile: str = config["profile"]
        self.results = f"results/{self.profile}"
        self.logs = f"logs/{self.profile}"

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Plan:
        """The plan of a profile that passed the schema (`config.validate_config` or Snakemake's
        `validate`); raises ConfigError where the plan itself cannot be formed."""
        plan = cls(config)
        plan.probe  # noqa: B018 (checked here, so a bad probe stops the DAG before any rule is built)
        return plan

    # --- what the profile holds -------------------------------------------------------------

    @cached_property
    def backbones(self) -> list[str]:
        return list(self.config["backbones"])

    @cached_property
    def tasks(self) -> list[str]:
        return list(self.config["tasks"])

    @cached_property
    def exit_kinds(self) -> list[str]:
        """Every exit method of `classifiers.kinds`, trained or training-free."""
        return list(self.config["classifiers"]["kinds"])

    @cached_property
    def all_exit_kinds(self) -> list[str]:
        """Every exit kind some cell runs: `classifiers.kinds`, then the calibrated kinds not among them."""
        return list(dict.fromkeys(self.exit_kinds + self.calibrated_kinds))

    @cached_property
    def trained_kinds(self) -> list[str]:
        """The exit kinds the distill rule trains (one classifier file per backbone each): the trained kinds of
        `classifiers.kinds` and of the calibrated kinds, less variants that read another kind's classifiers."""
        return [kind for kind in self.all_exit_kinds if exit_method(kind).distilled]

    @cached_property
    def calibration(self) -> dict[str, Any]:
        return self.config["calibration"]

    @cached_property
    def calibrated_kinds(self) -> list[str]:
        """The exit kinds with calibrated rows (`calibration.kinds`, by default every kind of classifiers.kinds);
        none without a target."""
        cal = self.calibration
        if not self.config["methods"]["early_exit"] or not (cal["consistency"] or cal["match_pruning"]):
            return []
        return list(cal.get("kinds") or self.exit_kinds)

    def calibrated_policies(self, backbone: str) -> list[str]:
        """The state policies of a backbone whose thresholds are calibrated: its first, or all of them."""
        policies = self.config["backbones"][backbone]["policies"]
        return list(policies) if self.calibration["policies"] == "all" else list(policies[:1])

    def prune_targets(self, backbone: str) -> list[int]:
        """The prune levels whose decode savings the calibrated rows match (`calibration.match_pruning`)."""
        if not self.calibration["match_pruning"]:
            return []
        return sorted(n for n in self.config["backbones"][backbone].get("prune", []) if n > 0)

    def calibrated_methods(self, backbone: str, policy: str) -> list[str]:
        """The calibrated rows of one backbone and policy (`{policy}` may stay a wildcard), in output order:
        per kind, each consistency target, then (registered kinds, not variants) each pruning level."""
        out = []
        for kind in self.calibrated_kinds:
            out += [calibrated_name(kind, policy, "consistency", c) for c in self.calibration["consistency"]]
            if base_kind(kind) == kind:
                out += [calibrated_name(kind, policy, "prune", n) for n in self.prune_targets(backbone)]
        return out

    @cached_property
    def policies(self) -> list[str]:
        """Every state policy some backbone of the profile runs, sorted."""
        return sorted({p for entry in self.config["backbones"].values() for p in entry["policies"]})

    @cached_property
    def distilled_backbones(self) -> list[str]:
        """The backbones the pipeline trains itself (rule train_backbone); the others are prepared."""
        return [n for n, s in self.config["backbones"].items() if s["source"]["kind"] == "distilled"]

    @cached_property
    def prepared_backbones(self) -> list[str]:
        return [n for n in self.backbones if n not in self.distilled_backbones]

    # --- methods: which cells exist -----------------------------------------------------------

    def baselines(self, backbone: str) -> list[str]:
        """full, the backbone's prune levels, the oracle: in the order of their files and tables."""
        return baseline_methods(self.config["backbones"][backbone], self.config["methods"]["oracle"])

    def ee_methods(self, backbone: str) -> list[str]:
        """The early-exit grid of a backbone: every exit kind x its policies x every threshold."""
        return ee_methods(self.config, backbone)

    def speculative_methods(self, backbone: str) -> list[str]:
        """A backbone's self-speculative rows (`methods.speculative.<backbone>`): one generate, score and
        latency job each; they decode at batch 1 (`spec.decode_spec`), so no grouped baseline job holds them."""
        return speculative_methods(self.config, backbone)

    def methods(self, backbone: str, task: str) -> list[str]:
        """Every method with a cell on (backbone, task), in table order: the baselines, the
        self-speculative rows, then the ee grid where the task runs it (`tasks.<task>.early_exit`)."""
        lossless = self.baselines(backbone) + self.speculative_methods(backbone)
        if not self.config["tasks"][task]["early_exit"]:
            return lossless
        calibrated = [m for policy in self.calibrated_policies(backbone) for m in self.calibrated_methods(backbone, policy)]
        return lossless + self.ee_methods(backbone) + calibrated

    @cached_property
    def grouped_baselines(self) -> dict[str, list[str]]:
        """Backbone -> its baselines, where one job per task decodes (and scores) them all
        (`generation.baseline_jobs: per_task`: rules generate_baselines_<backbone> and
        score_baselines_<backbone>); empty under per_method."""
        if self.config["generation"]["baseline_jobs"] != "per_task":
            return {}
        return {backbone: self.baselines(backbone) for backbone in self.backbones}

    # --- sweeps: the ee methods one generate_sweep / latency_sweep / score_sweep job holds ----

    @cached_property
    def per_kind(self) -> bool:
        return self.config["generation"]["ee_jobs"] == "per_kind"

    @cached_property
    def sweep_kinds(self) -> list[str]:
        """The exit kinds of one sweep: its `{exit_kind}` wildcard (per_kind) or every kind (per_policy)."""
        return ["{exit_kind}"] if self.per_kind else self.exit_kinds

    @cached_property
    def sweep_templates(self) -> list[str]:
        """The method names of one sweep job in output order, with `{policy}` (and under per_kind
        `{exit_kind}`) left as wildcards: every threshold of the profile per kind."""
        thresholds = self.config["classifiers"]["thresholds"]
        return [ee_name(kind, "{policy}", t) for kind in self.sweep_kinds for t in thresholds]

    @cached_property
    def sweep_name(self) -> str:
        """The stem of a sweep job's log and benchmark files."""
        return "ee-{exit_kind}-{policy}" if self.per_kind else "ee-{policy}"

    def sweep_methods(self, wildcards: Mapping[str, str]) -> list[str]:
        """The method names of one sweep job, its wildcards filled in."""
        values = dict(wildcards.items())
        return [template.format(**values) for template in self.sweep_templates]

    def sweep_inputs(self, wildcards: Mapping[str, str]) -> dict[str, Any]:
        """The backbone and the classifiers of the sweep's trained exit kinds (one file each)."""
        values = dict(wildcards.items())
        kinds = [kind.format(**values) for kind in self.sweep_kinds]
        return {"backbone": self.backbone_dir(values["backbone"]),
                "classifiers": [self.classifier_path(values["backbone"], k) for k in kinds if is_trained(k)]}

    # --- what a job reads ----------------------------------------------------------------------

    def model_inputs(self, backbone: str, exit_kind: str | None = None) -> dict[str, str]:
        """The backbone, and for a trained exit kind its classifiers."""
        inputs = {"backbone": self.backbone_dir(backbone)}
        if exit_kind is not None and is_trained(exit_kind):
            inputs["classifiers"] = self.classifier_path(backbone, exit_method(exit_kind).checkpoint)
        return inputs

    def calibrate_inputs(self, backbone: str) -> dict[str, Any]:
        """What a calibrate job reads: the backbone, the classifiers of the calibrated kinds, the FLOPs table."""
        checkpoints = dict.fromkeys(exit_method(k).checkpoint for k in self.calibrated_kinds if is_trained(k))
        return {"backbone": self.backbone_dir(backbone), "flops": self.flops_path(backbone),
                "classifiers": [self.classifier_path(backbone, kind) for kind in checkpoints]}

    def calibration_settings(self, backbone: str) -> dict[str, Any]:
        """What a calibrate job reads of the profile (`calibration.CalibrationSettings`)."""
        cal = self.calibration
        return {"kinds": self.calibrated_kinds, "policies": self.calibrated_policies(backbone),
                "consistency": list(cal["consistency"]), "epsilon": cal["epsilon"], "grid": list(cal["grid"]),
                "prune": self.prune_targets(backbone), "max_decodes": cal["max_decodes"]}

    def calibration_task_spec(self, task: str) -> dict[str, Any]:
        """The task's calibration split: its source's `calibration.split` (the task's own where it names one per
        task), the same prompts and limit."""
        spec = task_spec(self.config, task)
        if spec.source["kind"] == "local":
            raise ConfigError(f"tasks.{task}: a local data file has no calibration split; calibrated thresholds need "
                              f"an embedded or hub source (or set calibration.consistency: [] and match_pruning: false)")
        return replace(spec, source={**spec.source, "split": calibration_split(self.config, task)}).to_dict()

    def method_inputs(self, backbone: str, method: str) -> dict[str, str]:
        """What a job decoding or timing one method reads besides its task data: the backbone, and
        for an ee method the classifiers of its kind. Raises ConfigError for a prune level the
        backbone is too shallow for, when its depth is known before any job runs."""
        problem = prune_problem(self.config, backbone, method)
        if problem:
            raise ConfigError(problem)
        return self.model_inputs(backbone, parse_method(method).exit_kind)

    def task_data(self, task: str) -> list[str]:
        """The local files a task reads (its samples, its few-shot pool): inputs of the jobs that
        read them, so that editing one reruns them."""
        spec = task_spec(self.config, task)
        return [source["path"] for source in (spec.source, spec.fewshot_source) if source and source["kind"] == "local"]

    @cached_property
    def corpus_backbones(self) -> dict[str, str]:
        """Backbone -> its folder, for each backbone that writes a part of the distillation corpus."""
        return {source["backbone"]: self.backbone_dir(source["backbone"])
                for source in self.config["corpus"]["sources"] if source["kind"] == "generated"}

    def teacher_dir(self, backbone: str) -> str:
        """The folder of the teacher a distilled backbone learns from."""
        return self.backbone_dir(self.config["backbones"][backbone]["source"]["teacher"])

    # --- params: the settings a job reads (a change reruns exactly the jobs that read it) ------

    def decode_specs(self, backbone: str, task: str, methods: list[str]) -> list[dict[str, Any]]:
        """One decode spec per method, in output order (`spec.decode_spec`)."""
        return [decode_spec(self.config, backbone, task, method).to_dict() for method in methods]

    def task_spec(self, task: str) -> dict[str, Any]:
        return task_spec(self.config, task).to_dict()

    @cached_property
    def distill(self) -> dict[str, Any]:
        return self.config["distill"]

    @cached_property
    def training_settings(self) -> dict[str, Any]:
        """The `distill` keys that train a classifier."""
        return {key: self.distill[key] for key in TRAINING_SETTINGS}

    @cached_property
    def probe(self) -> str:
        """The trained kind that chooses top-k (`distill.top_k.probe`)."""
        probe = self.distill["top_k"]["probe"]
        try:
            trained = is_trained(probe)
        except ValueError as err:
            raise ConfigError(f"distill.top_k.probe: {err}; name a trained classifier kind "
                              "(calm, ffn, mamba or a plug-in's)") from None
        if not trained:
            raise ConfigError(f"distill.top_k.probe: {probe!r} is a training-free exit rule; name a trained "
                              "classifier kind (calm, ffn, mamba or a plug-in's)")
        return probe

    def kind_options(self, kind: str) -> dict[str, Any]:
        """A classifier kind's keyword options (`classifiers.options.<kind>`; a variant's are its kind's unless
        it has its own)."""
        options = self.config["classifiers"]["options"]
        return options.get(kind, options.get(base_kind(kind), {}))

    # --- latency -------------------------------------------------------------------------------

    @cached_property
    def latency_task(self) -> str:
        return self.config["latency"]["task"]

    @cached_property
    def latency_settings(self) -> dict[str, Any]:
        return {key: self.config["latency"][key] for key in LATENCY_SETTINGS}

    def latency_methods(self, backbone: str) -> list[str]:
        """`full`, the self-speculative rows and the ee methods (under the backbone's first policy unless
        latency.policies is all)."""
        first_policy = self.config["backbones"][backbone]["policies"][0]
        every_policy = self.config["latency"]["policies"] == "all"
        return ["full", *self.speculative_methods(backbone)] + [m for m in self.ee_methods(backbone) if every_policy or parse_method(m).policy == first_policy]

    def latency_specs(self, backbone: str, methods: list[str]) -> list[dict[str, Any]]:
        """One latency spec per method, in output order (`spec.latency_spec`)."""
        return [latency_spec(self.config, backbone, method).to_dict() for method in methods]

    # --- where files live (rules pass wildcards, e.g. plan.cell_path("{backbone}", "{task}", "{method}")) ---

    def backbone_dir(self, backbone: str) -> str:
        return f"{BACKBONES_DIR}/{backbone}"

    def classifier_path(self, backbone: str, kind: str, suffix: str = ".safetensors") -> str:
        """A trained kind's classifiers on a backbone (.safetensors) or their metrics (.json)."""
        return f"{self.results}/classifiers/{backbone}/{kind}{suffix}"

    def generation_path(self, backbone: str, task: str, method: str) -> str:
        return f"{self.results}/generations/{backbone}/{task}/{method}.jsonl"

    def cell_path(self, backbone: str, task: str, method: str) -> str:
        return f"{self.results}/cells/{backbone}/{task}/{method}.json"

    def ablation_path(self, backbone: str) -> str:
        return f"{self.results}/ablations/exit_weights/{backbone}.json"

    def calibration_path(self, backbone: str, task: str) -> str:
        return f"{self.results}/calibration/{backbone}/{task}.json"

    def latency_path(self, backbone: str, method: str) -> str:
        return f"{self.results}/latency/{backbone}/{method}.json"

    def flops_path(self, backbone: str) -> str:
        return f"{self.results}/flops/{backbone}.json"

    # --- target lists (what paper_tables and check read) ------------------------------------

    def cells(self) -> list[str]:
        """Every cell file of the profile, backbone by task by method."""
        return [self.cell_path(b, t, m) for b in self.backbones for t in self.tasks for m in self.methods(b, t)]

    def calibrations(self) -> list[str]:
        """Every calibrate job's file (none without calibrated kinds)."""
        if not self.calibrated_kinds:
            return []
        return [self.calibration_path(b, t) for b in self.backbones for t in self.tasks
                if self.config["tasks"][t]["early_exit"]]

    def ablations(self) -> list[str]:
        """The exit-weight ablation of every backbone (rule exit_weight_ablation; none without early exit)."""
        if not self.config["methods"]["early_exit"]:
            return []
        return [self.ablation_path(b) for b in self.backbones]

    def classifier_metrics(self) -> list[str]:
        """The metrics file of every trained kind on every backbone (none without early exit)."""
        if not self.config["methods"]["early_exit"]:
            return []
        return [self.classifier_path(b, kind, ".json") for b in self.backbones for kind in self.trained_kinds]

    def latency_targets(self) -> list[str]:
        return [self.latency_path(b, m) for b in self.backbones for m in self.latency_methods(b)]

    def flops_targets(self) -> list[str]:
        return [self.flops_path(b) for b in self.backbones]

    def backbone_dirs(self) -> list[str]:
        return [self.backbone_dir(b) for b in self.backbones]
