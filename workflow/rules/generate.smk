rule generate:
    """Early-exit generation of one method on one task under its decode spec: one JSONL line per sample."""
    input:
        unpack(generate_inputs),
        data=lambda w: task_data(w.task),
    output:
        f"{RESULTS}/generations/{{backbone}}/{{task}}/{{method}}.jsonl",
    params:
        runtime=RUNTIME,
        # everything the script reads: a change to any field reruns exactly the cells it affects
        spec=lambda w: decode_spec(config, w.backbone, w.task, w.method).to_dict(),
        task=lambda w: task_spec(config, w.task).to_dict(),
    log:
        f"{LOGS}/generate/{{backbone}}/{{task}}/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/generate/{{backbone}}/{{task}}/{{method}}.tsv"
    threads: THREADS
    resources:
        gpu=GPU,
    conda:
        CONDA_ENV
    script:
        "../scripts/generate.py"
