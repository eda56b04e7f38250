# Shared names: the profile's results folder, the cell list, wildcard constraints.
import os

from dynamax_bench.config import ConfigError, backbone_names, distilled_backbones, task_names
from dynamax_bench.profile_checks import check_sources, check_profile, prune_problem, target_problem
from dynamax_bench.provenance import run_description
from dynamax_bench.runtime import job_runtime
from dynamax_bench.classifiers.registry import is_trained
from dynamax_bench.spec import METHOD_PATTERN, baseline_methods, decode_spec, ee_methods, ee_name
from dynamax_bench.spec import latency_spec, parse_method, speculative_methods, task_spec

try:
    check_profile(config)
    if workflow.is_main_process:  # reads the data and transformers: once per run, not per job
        check_sources(config)
except ConfigError as err:
    raise WorkflowError(str(err))

PROFILE = config["profile"]
RESULTS = f"results/{PROFILE}"
LOGS = f"logs/{PROFILE}"
THREADS = config["runtime"]["threads"]
# What every job's set-up reads (seed, threads, device, dtype, offline): a change reruns the jobs.
RUNTIME = job_runtime(config)
# The chain every early-exit cell waits for (corpus -> trained backbone -> oracle -> top-k -> classifiers)
# runs before the generate jobs that are ready anyway: started last, it leaves cores idle at the end.
CRITICAL_PATH = 10
# Rules that run a model on the profile's device hold one `gpu` resource on CUDA profiles, so
# `--resources gpu=1` (the GPU profile in profiles/gpu) keeps them from sharing the card.
GPU = 1 if config["runtime"]["device"] == "cuda" else 0
# Every rule's software environment (`--sdm conda`); the CPU profiles need no CUDA packages.
CONDA_ENV = f"{workflow.basedir}/envs/{'cuda' if config['runtime']['device'] == 'cuda' else 'cpu'}.yaml"

# Jobs import this checkout's dynamax_bench, whatever copy is installed in the environment.
# (Each job sets HF_HUB_OFFLINE / HF_DATASETS_OFFLINE itself: dynamax_bench.runtime.set_up.)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])))


wildcard_constraints:
    backbone="|".join(backbone_names(config)),
    task="|".join(task_names(config)),
    method=METHOD_PATTERN,
    kind="|".join(k for k in config["classifiers"]["kinds"] if is_trained(k)) or "(?!)",
    exit_kind="|".join(config["classifiers"]["kinds"]) or "(?!)",
    policy="|".join(sorted({p for entry in config["backbones"].values() for p in entry["policies"]})),

# The ee methods one sweep job (generate_sweep, latency_sweep) makes, in output order: every threshold
# of one exit kind and policy (`generation.ee_jobs: per_kind`), or of every kind under one policy
# (`per_policy`); SWEEP names the job's log and benchmark files.
THRESHOLDS = config["classifiers"]["thresholds"]
PER_KIND = config["generation"]["ee_jobs"] == "per_kind"
SWEEP_KINDS = ["{exit_kind}"] if PER_KIND else config["classifiers"]["kinds"]
SWEEP_METHODS = [ee_name(kind, "{policy}", t) for kind in SWEEP_KINDS for t in THRESHOLDS]
SWEEP = "ee-{exit_kind}-{policy}" if PER_KIND else "ee-{policy}"
# What every latency job reads of the profile's `latency` block besides its task.
LATENCY_SETTINGS = {k: config["latency"][k] for k in ("prompts", "warmup", "repeats", "throughput_batch")}


# Each backbone's baseline methods (full, its prune levels, the oracle), in the order of their files.
BASELINES = {b: baseline_methods(config["backbones"][b], config["methods"]["oracle"]) for b in backbone_names(config)}
# The backbones whose baselines decode (and score) in one job per task: `generation.baseline_jobs: per_task`
# (generate_baselines_<backbone>, score_baselines_<backbone>); none under per_method.
GROUPED_BASELINES = BASELINES if config["generation"]["baseline_jobs"] == "per_task" else {}


# Each backbone's self-speculative rows (methods.speculative.<backbone>): one `generate`, `score` and `latency`
# job each; they decode at batch 1 (spec.decode_spec), so they stay out of the batched baseline jobs.
SPECULATIVE = {b: speculative_methods(config, b) for b in backbone_names(config)}


def methods_of(backbone, task):
    early = ee_methods(config, backbone) if config["tasks"][task]["early_exit"] else []
    return BASELINES[backbone] + SPECULATIVE[backbone] + early


def all_cells():
    return [
        f"{RESULTS}/cells/{backbone}/{task}/{method}.json"
        for backbone in backbone_names(config)
        for task in task_names(config)
        for method in methods_of(backbone, task)
    ]


def all_classifier_metrics():
    if not config["methods"]["early_exit"]:
        return []
    return [
        f"{RESULTS}/classifiers/{backbone}/{kind}.json"
        for backbone in backbone_names(config)
        for kind in config["classifiers"]["kinds"]
        if is_trained(kind)
    ]


def corpus_backbones(wildcards=None):
    return {
        source["backbone"]: f"resources/backbones/{source['backbone']}"
        for source in config["corpus"]["sources"]
        if source["kind"] == "generated"
    }


def task_data(task):
    """The local files a task reads (its samples, its few-shot pool): inputs of the jobs that read
    them, so that editing one reruns them."""
    spec = task_spec(config, task)
    return [source["path"] for source in (spec.source, spec.fewshot_source) if source and source["kind"] == "local"]


def model_inputs(backbone, exit_kind=None):
    """The backbone, and for a trained exit kind its classifiers."""
    inputs = {"backbone": f"resources/backbones/{backbone}"}
    if exit_kind is not None and is_trained(exit_kind):
        inputs["classifiers"] = f"{RESULTS}/classifiers/{backbone}/{exit_kind}.safetensors"
    return inputs


def generate_inputs(wildcards):
    """The backbone, and for an ee method the trained classifiers of its kind."""
    problem = prune_problem(config, wildcards.backbone, wildcards.method)
    if problem:
        raise WorkflowError(problem)
    return model_inputs(wildcards.backbone, parse_method(wildcards.method).exit_kind)


def baseline_specs(backbone):
    """The params function of generate_baselines_<backbone>: one decode spec per baseline, in output order."""
    return lambda w: [decode_spec(config, backbone, w.task, method).to_dict() for method in BASELINES[backbone]]


def sweep_methods(wildcards):
    """SWEEP_METHODS of one sweep job, its wildcards filled in."""
    return [method.format(**dict(wildcards.items())) for method in SWEEP_METHODS]


def sweep_inputs(wildcards):
    """The backbone and the classifiers of the sweep's trained exit kinds (one file each)."""
    each = [model_inputs(wildcards.backbone, kind.format(**dict(wildcards.items()))) for kind in SWEEP_KINDS]
    return {"backbone": each[0]["backbone"], "classifiers": [i["classifiers"] for i in each if "classifiers" in i]}


def latency_methods(backbone):
    """`full`, the self-speculative rows and the ee methods (under the first policy unless latency.policies is all)."""
    spec = config["backbones"][backbone]
    names = ["full", *SPECULATIVE[backbone]]
    for method in ee_methods(config, backbone):
        if config["latency"]["policies"] == "all" or parse_method(method).policy == spec["policies"][0]:
            names.append(method)
    return names


def all_latency():
    return [
        f"{RESULTS}/latency/{backbone}/{method}.json"
        for backbone in backbone_names(config)
        for method in latency_methods(backbone)
    ]


def all_flops():
    return [f"{RESULTS}/flops/{backbone}.json" for backbone in backbone_names(config)]


# The distill section, read by the training rules (classifiers.smk).
TRAINING_SETTINGS = ("epochs", "batch_size", "learning_rate", "weight_decay", "balance_classes", "exit_weights",
                     "share_parameters", "validation_fraction", "test_fraction")
DISTILL = config["distill"]
PROBE = DISTILL["top_k"]["probe"]
try:
    if not is_trained(PROBE):
        raise ValueError(f"{PROBE!r} is a training-free exit rule")
except ValueError as err:
    raise WorkflowError(f"distill.top_k.probe: {err}; name a trained classifier kind (calm, ffn, mamba or a plug-in's)")


def kind_options(kind):
    return config["classifiers"]["options"].get(kind, {})


# The input function of the unknown_target rule (targets.smk), which fails while the DAG is built.
def unknown_target_error(wildcards):
    raise WorkflowError(
        target_problem(config, f"{RESULTS}/{wildcards.stage}/{wildcards.rest}", wildcards.rest)
    )
