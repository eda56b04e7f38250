from dynamax_bench.reporting.statistics import IntervalSettings


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
        runtime=RUNTIME,
        task=lambda w: task_spec(config, w.task).to_dict(),
        profile=PROFILE,
        evidence=IntervalSettings.from_dict(config["evidence"]).to_dict(),
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
