# With `generation.ee_jobs: per_policy`, one latency_sweep job times every exit kind and threshold
# of one policy (one method after another, each after its own warm-up); `latency` times one method.


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


if config["generation"]["ee_jobs"] == "per_policy":

    ruleorder: latency_sweep > latency

    rule latency_sweep:
        """`latency` for every exit kind and threshold of one policy, in one job (start-up and backbone
        load shared; the methods are timed one after another)."""
        input:
            unpack(policy_sweep_inputs),
            flops=f"{RESULTS}/flops/{{backbone}}.json",
            data=task_data(config["latency"]["task"]),
        output:
            [f"{RESULTS}/latency/{{backbone}}/{ee_name(kind, '{policy}', t)}.json"
             for kind in EXIT_KINDS for t in THRESHOLDS],
        params:
            runtime=RUNTIME,
            specs=lambda w: [latency_spec(config, w.backbone, ee_name(kind, w.policy, t)).to_dict()
                             for kind in EXIT_KINDS for t in THRESHOLDS],
            task=task_spec(config, config["latency"]["task"]).to_dict(),
            settings=LATENCY_SETTINGS,
        log:
            f"{LOGS}/latency/{{backbone}}/ee-{{policy}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/latency/{{backbone}}/ee-{{policy}}.tsv"
        threads: lambda wildcards: workflow.cores if workflow.local_exec else THREADS
        resources:
            gpu=GPU,
        conda:
            CONDA_ENV
        script:
            "../scripts/latency.py"
