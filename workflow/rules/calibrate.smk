# Calibrated thresholds (`calibration` section, dynamax_bench/calibration/): one calibrate job per
# backbone and task chooses every calibrated kind's threshold for each target on the task's calibration
# split; one job per backbone, task and policy decodes the calibrated rows at those thresholds (a target
# no threshold could certify copies `full`'s generations: it runs as the full model; targets calibrated to
# one threshold decode once, generation/generate.py), and one scores them.


rule calibrate:
    """Learn-Then-Test down the threshold grid for each consistency target, and the decode savings of each
    pruning level, on the calibration split (disjoint from the evaluated samples)."""
    input:
        unpack(lambda w: PLAN.calibrate_inputs(w.backbone)),
        data=lambda w: PLAN.task_data(w.task),
    output:
        PLAN.calibration_path("{backbone}", "{task}"),
    params:
        runtime=RUNTIME,
        spec=lambda w: PLAN.decode_specs(w.backbone, w.task, ["full"])[0],
        task=lambda w: PLAN.calibration_task_spec(w.task),
        settings=lambda w: PLAN.calibration_settings(w.backbone),
    log:
        f"{LOGS}/calibrate/{{backbone}}/{{task}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/calibrate/{{backbone}}/{{task}}.tsv"
    threads: THREADS
    priority: CRITICAL_PATH
    resources:
        gpu=GPU,
    conda:
        CONDA_ENV
    script:
        "../scripts/calibrate.py"


# The calibrated rows of a backbone (its prune levels name some of them, so one rule per backbone).
for _backbone in PLAN.backbones if PLAN.calibrated_kinds else []:
    _templates = PLAN.calibrated_methods(_backbone, "{policy}")

    rule:
        name:
            f"generate_calibrated_{_backbone}"
        input:
            backbone=PLAN.backbone_dir(_backbone),
            classifiers=PLAN.calibrate_inputs(_backbone)["classifiers"],
            calibration=PLAN.calibration_path(_backbone, "{task}"),
            full=PLAN.generation_path(_backbone, "{task}", "full"),
            data=lambda w: PLAN.task_data(w.task),
        output:
            [PLAN.generation_path(_backbone, "{task}", method) for method in _templates],
        params:
            **GENERATE_PARAMS,
            specs=lambda w, backbone=_backbone: PLAN.decode_specs(backbone, w.task,
                                                                  PLAN.calibrated_methods(backbone, w.policy)),
        log:
            f"{LOGS}/generate/{_backbone}/{{task}}/calibrated-{{policy}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/generate/{_backbone}/{{task}}/calibrated-{{policy}}.tsv"
        threads: THREADS
        resources:
            gpu=GPU,
        conda:
            CONDA_ENV
        script:
            "../scripts/generate.py"

    workflow.ruleorder(f"generate_calibrated_{_backbone}", "generate")

    rule:
        name:
            f"score_calibrated_{_backbone}"
        input:
            generations=[PLAN.generation_path(_backbone, "{task}", method) for method in _templates],
            full=PLAN.generation_path(_backbone, "{task}", "full"),
            backbone=PLAN.backbone_dir(_backbone),
            flops=PLAN.flops_path(_backbone),
            data=lambda w: PLAN.task_data(w.task),
        output:
            [PLAN.cell_path(_backbone, "{task}", method) for method in _templates],
        params:
            **SCORE_PARAMS,
        log:
            f"{LOGS}/score/{_backbone}/{{task}}/calibrated-{{policy}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/score/{_backbone}/{{task}}/calibrated-{{policy}}.tsv"
        conda:
            CONDA_ENV
        script:
            "../scripts/score.py"

    workflow.ruleorder(f"score_calibrated_{_backbone}", "score")
