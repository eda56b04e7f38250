rule score:
    """One cell of Table 3: task metrics, consistency with full, layers executed."""
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
    log:
        f"{LOGS}/score/{{backbone}}/{{task}}/{{method}}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/score.py"
