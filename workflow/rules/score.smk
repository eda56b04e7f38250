from dynamax_bench.reporting.statistics import IntervalSettings

# What every scoring job reads besides its files: a change reruns the cells (the rules below share it).
SCORE_PARAMS = dict(
    runtime=RUNTIME,
    task=lambda w: task_spec(config, w.task).to_dict(),
    profile=PROFILE,
    evidence=IntervalSettings.from_dict(config["evidence"]).to_dict(),
)


rule score:
    """One cell of Table 3: task metrics, consistency with full, layers executed, each per sample
    and with its interval (evidence: confidence, resamples, seed; not min_samples, which only the
    claims read, so changing it reruns paper_tables and no cell)."""
    input:
        generations=f"{RESULTS}/generations/{{backbone}}/{{task}}/{{method}}.jsonl",
        full=f"{RESULTS}/generations/{{backbone}}/{{task}}/full.jsonl",
        backbone="resources/backbones/{backbone}",
        flops=f"{RESULTS}/flops/{{backbone}}.json",
        data=lambda w: task_data(w.task),
    output:
        f"{RESULTS}/cells/{{backbone}}/{{task}}/{{method}}.json",
    params:
        **SCORE_PARAMS,
    log:
        f"{LOGS}/score/{{backbone}}/{{task}}/{{method}}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/score.py"


# The cells of a sweep (SWEEP_METHODS, common.smk) in one job, as their generations are made: a score
# job is mostly its start-up (about 5 s on 2 cores, against 0.1 s of scoring), which 15 cells a sweep
# on the default profile paid 15 times. Each file is what `score` writes for its cell alone: the
# rule is `score` (its params, environment and script) with a sweep's files.
ruleorder: score_sweep > score


use rule score as score_sweep with:
    input:
        generations=[f"{RESULTS}/generations/{{backbone}}/{{task}}/{method}.jsonl" for method in SWEEP_METHODS],
        full=f"{RESULTS}/generations/{{backbone}}/{{task}}/full.jsonl",
        backbone="resources/backbones/{backbone}",
        flops=f"{RESULTS}/flops/{{backbone}}.json",
        data=lambda w: task_data(w.task),
    output:
        [f"{RESULTS}/cells/{{backbone}}/{{task}}/{method}.json" for method in SWEEP_METHODS],
    log:
        f"{LOGS}/score/{{backbone}}/{{task}}/{SWEEP}.log",


# A backbone's baseline cells on one task in one job, as generate_baselines_<backbone> makes them
# (`generation.baseline_jobs: per_task`): `score`'s params, environment and script with those files,
# one rule per backbone (its prune levels name its outputs).
for _backbone in GROUPED_BASELINES:

    rule:
        name:
            f"score_baselines_{_backbone}"
        input:
            generations=[f"{RESULTS}/generations/{_backbone}/{{task}}/{method}.jsonl" for method in BASELINES[_backbone]],
            full=f"{RESULTS}/generations/{_backbone}/{{task}}/full.jsonl",
            backbone=f"resources/backbones/{_backbone}",
            flops=f"{RESULTS}/flops/{_backbone}.json",
            data=lambda w: task_data(w.task),
        output:
            [f"{RESULTS}/cells/{_backbone}/{{task}}/{method}.json" for method in BASELINES[_backbone]],
        params:
            **SCORE_PARAMS,
        log:
            f"{LOGS}/score/{_backbone}/{{task}}/baselines.log",
        conda:
            CONDA_ENV
        script:
            "../scripts/score.py"

    workflow.ruleorder(f"score_baselines_{_backbone}", "score")
