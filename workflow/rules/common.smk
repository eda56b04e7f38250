# Shared names: the profile's results folder, the cell list, wildcard constraints.
import os

from dynamax_bench.config import ConfigError, backbone_names, check_semantics, task_names
from dynamax_bench.exit_methods import is_trained
from dynamax_bench.methods import baseline_methods, ee_methods, parse_method

try:
    check_semantics(config)
except ConfigError as err:
    raise WorkflowError(str(err))

PROFILE = config["profile"]
RESULTS = f"results/{PROFILE}"
LOGS = f"logs/{PROFILE}"
THREADS = config["runtime"]["threads"]

# Jobs import this checkout's dynamax_bench, whatever copy is installed in the environment.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")]))

if config["runtime"]["offline"]:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"


wildcard_constraints:
    backbone="|".join(backbone_names(config)),
    task="|".join(task_names(config)),
    method=r"full|oracle|prune\d+|ee-[a-z0-9_]+-[a-z]+-t[0-9.]+",
    kind="|".join(k for k in config["classifiers"]["kinds"] if is_trained(k)) or "(?!)",


def methods_of(backbone):
    return baseline_methods(config["backbones"][backbone], config["methods"]["oracle"]) + ee_methods(config, backbone)


def all_cells():
    return [
        f"{RESULTS}/cells/{backbone}/{task}/{method}.json"
        for backbone in backbone_names(config)
        for task in task_names(config)
        for method in methods_of(backbone)
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
