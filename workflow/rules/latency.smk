# latency_sweep times the ee methods of a sweep (as generate_sweep decodes them), one after another
# in one job, each after its own warm-up; `latency` times one other method (`full`).
ruleorder: latency_sweep > latency


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
        specs=lambda w: [latency_spec(config, w.backbone, w.method).to_dict()],
        task=task_spec(config, config["latency"]["task"]).to_dict(),
        settings=LATENCY_SETTINGS,
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


rule latency_sweep:
    """`latency` for the methods of one sweep (SWEEP_METHODS: one exit kind's thresholds, or every
    kind's), in one job: start-up and backbone load shared, the methods timed one after another."""
    input:
        unpack(sweep_inputs),
        flops=f"{RESULTS}/flops/{{backbone}}.json",
        data=task_data(config["latency"]["task"]),
    output:
        [f"{RESULTS}/latency/{{backbone}}/{method}.json" for method in SWEEP_METHODS],
    params:
        runtime=RUNTIME,
        specs=lambda w: [latency_spec(config, w.backbone, method).to_dict() for method in sweep_methods(w)],
        task=task_spec(config, config["latency"]["task"]).to_dict(),
        settings=LATENCY_SETTINGS,
    log:
        f"{LOGS}/latency/{{backbone}}/{SWEEP}.log",
    benchmark:
        f"{RESULTS}/benchmarks/latency/{{backbone}}/{SWEEP}.tsv"
    threads: lambda wildcards: workflow.cores if workflow.local_exec else THREADS
    resources:
        gpu=GPU,
    conda:
        CONDA_ENV
    script:
        "../scripts/latency.py"
