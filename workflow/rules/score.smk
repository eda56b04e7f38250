from dynamax_bench.reporting.statistics import IntervalSettings

# What every scoring job reads besides its files: a change reruns the cells (the rules below share it).
SCORE_PARAMS = dict(
    runtime=RUNTIME,
    task=lambda w: PLAN.task_spec(w.task),
    profile=PLAN.profile,
    evidence=IntervalSettings.from_dict(config["evidence"]).to_dict(),
)


rule score:
    """One cell of Table 3: task metrics, consistency with full, layers executed, each per sample
    and with its interval (evidence: confidence, resamples, seed; not min_samples, which only the
    claims read, so changing it reruns paper_tables and no cell)."""
    input:
        generations=PLAN.generation_path("{backbone}", "{task}", "{method}"),
        full=PLAN.generation_path("{backbone}", "{task}", "full"),
        backbone=PLAN.backbone_dir("{backbone}"),
        flops=PLAN.flops_path("{backbone}"),
        data=lambda w: PLAN.task_data(w.task),
    output:
        PLAN.cell_path("{backbone}", "{task}", "{method}"),
    params:
        **SCORE_PARAMS,
    log:
        f"{LOGS}/score/{{backbone}}/{{task}}/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/score/{{backbone}}/{{task}}/{{method}}.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/score.py"


# The cells of a sweep (`Plan.sweep_templates`) in one job, as their generations are made: a score
# job is mostly its start-up (about 5 s on 2 cores, against 0.1 s of scoring), which 15 cells a sweep
# on the default profile paid 15 times. Each file is what `score` writes for its cell alone: the
# rule is `score` (its params, environment and script) with a sweep's files.
ruleorder: score_sweep > score


use rule score as score_sweep with:
    input:
        generations=[PLAN.generation_path("{backbone}", "{task}", method) for method in PLAN.sweep_templates],
        full=PLAN.generation_path("{backbone}", "{task}", "full"),
        backbone=PLAN.backbone_dir("{backbone}"),
        flops=PLAN.flops_path("{backbone}"),
        data=lambda w: PLAN.task_data(w.task),
    output:
        [PLAN.cell_path("{backbone}", "{task}", method) for method in PLAN.sweep_templates],
    log:
        f"{LOGS}/score/{{backbone}}/{{task}}/{PLAN.sweep_name}.log",
    benchmark:
        f"{RESULTS}/benchmarks/score/{{backbone}}/{{task}}/{PLAN.sweep_name}.tsv"


# A backbone's baseline cells on one task in one job, as generate_baselines_<backbone> makes them
# (`generation.baseline_jobs: per_task`): `score`'s params, environment and script with those files,
# one rule per backbone (its prune levels name its outputs).
for _backbone, _methods in PLAN.grouped_baselines.items():

    rule:
        name:
            f"score_baselines_{_backbone}"
        input:
            generations=[PLAN.generation_path(_backbone, "{task}", method) for method in _methods],
            full=PLAN.generation_path(_backbone, "{task}", "full"),
            backbone=PLAN.backbone_dir(_backbone),
            flops=PLAN.flops_path(_backbone),
            data=lambda w: PLAN.task_data(w.task),
        output:
            [PLAN.cell_path(_backbone, "{task}", method) for method in _methods],
        params:
            **SCORE_PARAMS,
        log:
            f"{LOGS}/score/{_backbone}/{{task}}/baselines.log",
        benchmark:
            f"{RESULTS}/benchmarks/score/{_backbone}/{{task}}/baselines.tsv"
        conda:
            CONDA_ENV
        script:
            "../scripts/score.py"

    workflow.ruleorder(f"score_baselines_{_backbone}", "score")
