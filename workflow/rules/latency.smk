# latency_sweep times the ee methods of a sweep (as generate_sweep decodes them) in one job; `latency`
# times one other method (`full` or a spec-*). In either job the methods take turns with `full` in
# rounds, one run of `full` per round: the speedup's reference (costs/latency.py).
ruleorder: latency_sweep > latency


rule latency:
    """Wall-clock time per token and per sample of one method at batch 1, after warm-up (Figure 3,
    speedups), and its decode throughput at `latency.throughput_batch` (Table 3's batched speedup)."""
    input:
        unpack(method_inputs),
        flops=PLAN.flops_path("{backbone}"),
        data=PLAN.task_data(PLAN.latency_task),
    output:
        PLAN.latency_path("{backbone}", "{method}"),
    params:
        runtime=RUNTIME,
        specs=lambda w: PLAN.latency_specs(w.backbone, [w.method]),
        task=PLAN.task_spec(PLAN.latency_task),
        settings=PLAN.latency_settings,
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


# `latency` for the methods of one sweep (`Plan.sweep_templates`: one exit kind's thresholds, or every
# kind's), in one job: start-up and backbone load shared, the methods timed one after another.
use rule latency as latency_sweep with:
    input:
        unpack(PLAN.sweep_inputs),
        flops=PLAN.flops_path("{backbone}"),
        data=PLAN.task_data(PLAN.latency_task),
    output:
        [PLAN.latency_path("{backbone}", method) for method in PLAN.sweep_templates],
    params:
        specs=lambda w: PLAN.latency_specs(w.backbone, PLAN.sweep_methods(w)),
    log:
        f"{LOGS}/latency/{{backbone}}/{PLAN.sweep_name}.log",
    benchmark:
        f"{RESULTS}/benchmarks/latency/{{backbone}}/{PLAN.sweep_name}.tsv"
