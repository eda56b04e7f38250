# An ee cell at a threshold of the profile comes from its sweep; `generate` makes every other cell
# (full, prune<N>, oracle, and an ee method at a threshold outside `classifiers.thresholds`).
ruleorder: generate_sweep > generate


rule generate:
    """Generation of one method on one task under its decode spec: one JSONL line per sample."""
    input:
        unpack(generate_inputs),
        data=lambda w: task_data(w.task),
    output:
        f"{RESULTS}/generations/{{backbone}}/{{task}}/{{method}}.jsonl",
    params:
        runtime=RUNTIME,
        # everything the script reads: a change to any field reruns exactly the cells it affects
        specs=lambda w: [decode_spec(config, w.backbone, w.task, w.method).to_dict()],
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


# One job decodes a sweep: every threshold of the profile for one exit kind under one policy
# (`generation.ee_jobs: per_kind`), or for every exit kind under one policy (`per_policy`). The
# start-up, the classifiers and each batch's prompt pass are shared (the stateless kinds read the
# prompt alike, engine/generator.py `Strategy.prompt_pass`), and each file is what its method alone
# writes (engine test: test_a_sweep_in_one_call_equals_each_strategy_alone). Asking for one ee cell
# runs its sweep.
if config["generation"]["ee_jobs"] == "per_kind":

    rule generate_sweep:
        """Early-exit generation of one exit kind under one policy at every threshold, in one job."""
        input:
            unpack(sweep_inputs),
            data=lambda w: task_data(w.task),
        output:
            [f"{RESULTS}/generations/{{backbone}}/{{task}}/{ee_name('{exit_kind}', '{policy}', t)}.jsonl"
             for t in THRESHOLDS],
        params:
            runtime=RUNTIME,
            # one decode spec per output, in their order: a change to any field reruns the sweeps it affects
            specs=lambda w: [decode_spec(config, w.backbone, w.task, ee_name(w.exit_kind, w.policy, t)).to_dict()
                             for t in THRESHOLDS],
            task=lambda w: task_spec(config, w.task).to_dict(),
        log:
            f"{LOGS}/generate/{{backbone}}/{{task}}/ee-{{exit_kind}}-{{policy}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/generate/{{backbone}}/{{task}}/ee-{{exit_kind}}-{{policy}}.tsv"
        threads: THREADS
        resources:
            gpu=GPU,
        conda:
            CONDA_ENV
        script:
            "../scripts/generate.py"

else:

    rule generate_sweep:
        """Early-exit generation of every exit kind under one policy at every threshold, in one job."""
        input:
            unpack(policy_sweep_inputs),
            data=lambda w: task_data(w.task),
        output:
            [f"{RESULTS}/generations/{{backbone}}/{{task}}/{ee_name(kind, '{policy}', t)}.jsonl"
             for kind in EXIT_KINDS for t in THRESHOLDS],
        params:
            runtime=RUNTIME,
            specs=lambda w: [decode_spec(config, w.backbone, w.task, ee_name(kind, w.policy, t)).to_dict()
                             for kind in EXIT_KINDS for t in THRESHOLDS],
            task=lambda w: task_spec(config, w.task).to_dict(),
        log:
            f"{LOGS}/generate/{{backbone}}/{{task}}/ee-{{policy}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/generate/{{backbone}}/{{task}}/ee-{{policy}}.tsv"
        threads: THREADS
        resources:
            gpu=GPU,
        conda:
            CONDA_ENV
        script:
            "../scripts/generate.py"
