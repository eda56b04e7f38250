# The profile's plan (dynamax_bench/plan.py: methods, sweeps, targets, what each job reads), the
# settings every rule shares, and the wildcard constraints.
import os

from dynamax_bench.config import ConfigError
from dynamax_bench.doctor import check_checkpoints
from dynamax_bench.errors import stop
from dynamax_bench.plan import Plan
from dynamax_bench.profile_checks import check_profile, check_sources, target_problem
from dynamax_bench.provenance import run_description
from dynamax_bench.runtime import job_runtime
from dynamax_bench.spec import METHOD_PATTERN

try:
    check_profile(config)
    if workflow.is_main_process:  # reads the data and transformers: once per run, not per job
        check_sources(config)
        # a damaged checkpoint stops the run before Snakemake reruns (and deletes) what was made from it
        check_checkpoints(config, " ".join(map(str, workflow.configfiles)) or "config/default.yaml")
    PLAN = Plan.from_config(config)
except ConfigError as err:
    stop(err)

RESULTS = PLAN.results
LOGS = PLAN.logs
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
    backbone="|".join(PLAN.backbones),
    task="|".join(PLAN.tasks),
    method=METHOD_PATTERN,
    kind="|".join(PLAN.trained_kinds) or "(?!)",
    exit_kind="|".join(PLAN.exit_kinds) or "(?!)",
    policy="|".join(PLAN.policies),


def method_inputs(wildcards):
    """The input function of the rules that decode or time one method (a too deep prune level fails here)."""
    try:
        return PLAN.method_inputs(wildcards.backbone, wildcards.method)
    except ConfigError as err:
        raise WorkflowError(str(err))


# The input function of the unknown_target rule (targets.smk), which fails while the DAG is built.
def unknown_target_error(wildcards):
    raise WorkflowError(
        target_problem(config, f"{RESULTS}/{wildcards.stage}/{wildcards.rest}", wildcards.rest)
    )
