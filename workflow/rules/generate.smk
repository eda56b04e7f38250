rule generate:
    """Early-exit generation of one method on one task through the `dynamax` lm-eval model: one JSONL line per sample."""
    input:
        unpack(generate_inputs),
    output:
        f"{RESULTS}/generations/{{backbone}}/{{task}}/{{method}}.jsonl",
    params:
        # listed so that a change to any of them reruns the cell
        spec=lambda w: config["backbones"][w.backbone],
        task=lambda w: config["tasks"][w.task],
        limit=config.get("limit"),
        generation=config["generation"],
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
