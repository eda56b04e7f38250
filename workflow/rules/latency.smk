rule latency:
    """Wall-clock time per token and per sample of one method at batch 1, after warm-up (Figure 3,
    speedups), and its decode throughput at `latency.throughput_batch` (Table 3's batched speedup)."""
    input:
        unpack(generate_inputs),
        flops=f"{RESULTS}/flops/{{backbone}}.json",
        data=task_data(config["latency"]["task"]),
    output:
        f"{RESULTS}/latency/{{backbone}}/{{method}}.json",
    params:
        runtime=RUNTIME,
        spec=lambda w: latency_spec(config, w.backbone, w.method).to_dict(),
        task=task_spec(config, config["latency"]["task"]).to_dict(),
        settings={k: config["latency"][k] for k in ("prompts", "warmup", "repeats", "throughput_batch")},
    log:
        f"{LOGS}/latency/{{backbone}}/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/latency/{{backbone}}/{{method}}.tsv"
    # on one machine every core of the run: no other job shares the processor while this one is
    # timed; under a cluster executor (no core count) the job's own allocation of runtime.threads
    threads: lambda wildcards: workflow.cores if workflow.local_exec else THREADS
    resources:
        gpu=GPU,
    conda:
        CONDA_ENV
    script:
        "../scripts/latency.py"
