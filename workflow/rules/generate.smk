# An ee cell at a threshold of the profile comes from its sweep; with `generation.baseline_jobs:
# per_task` a baseline cell (full, a listed prune<N>, oracle) from its backbone's generate_baselines
# job; `generate` makes every other cell (each baseline under per_method, a prune level or an ee
# threshold the profile does not list).
ruleorder: generate_sweep > generate

# What every generating job reads besides its decode specs (the rules below share it).
GENERATE_PARAMS = dict(runtime=RUNTIME, task=lambda w: PLAN.task_spec(w.task))


rule generate:
    """Generation of one method on one task under its decode spec: one JSONL line per sample."""
    input:
        unpack(method_inputs),
        data=lambda w: PLAN.task_data(w.task),
    output:
        PLAN.generation_path("{backbone}", "{task}", "{method}"),
    params:
        **GENERATE_PARAMS,
        # everything the script reads: a change to any field reruns exactly the cells it affects
        specs=lambda w: PLAN.decode_specs(w.backbone, w.task, [w.method]),
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


# One job decodes a sweep (`Plan.sweep_templates`): every threshold of the profile for one exit
# kind under one policy (`generation.ee_jobs: per_kind`), or for every exit kind under one policy
# (`per_policy`). The start-up, the classifiers and each batch's prompt pass are shared (the
# stateless kinds read the prompt alike, engine/generator.py `Strategy.prompt_pass`), and each file
# is what its method alone writes (engine test: test_a_sweep_in_one_call_equals_each_strategy_alone).
# Asking for one ee cell runs its sweep.
use rule generate as generate_sweep with:
    input:
        unpack(PLAN.sweep_inputs),
        data=lambda w: PLAN.task_data(w.task),
    output:
        [PLAN.generation_path("{backbone}", "{task}", method) for method in PLAN.sweep_templates],
    params:
        # one decode spec per output, in their order (generate's other params stay)
        specs=lambda w: PLAN.decode_specs(w.backbone, w.task, PLAN.sweep_methods(w)),
    log:
        f"{LOGS}/generate/{{backbone}}/{{task}}/{PLAN.sweep_name}.log",
    benchmark:
        f"{RESULTS}/benchmarks/generate/{{backbone}}/{{task}}/{PLAN.sweep_name}.tsv"


# A backbone's baselines on one task in one job (`generation.baseline_jobs: per_task`): one start-up,
# and full, prune0 and the oracle prefill each batch once (engine/generator.py `Strategy.prompt_pass`).
# Backbones list different prune levels, so each gets its own rule (Snakemake's procedural rule
# definition) with its methods as outputs; each file is what `generate` writes for its method alone.
for _backbone, _methods in PLAN.grouped_baselines.items():

    rule:
        name:
            f"generate_baselines_{_backbone}"
        input:
            backbone=PLAN.backbone_dir(_backbone),
            data=lambda w: PLAN.task_data(w.task),
        output:
            [PLAN.generation_path(_backbone, "{task}", method) for method in _methods],
        params:
            **GENERATE_PARAMS,
            specs=lambda w, backbone=_backbone, methods=_methods: PLAN.decode_specs(backbone, w.task, methods),
        log:
            f"{LOGS}/generate/{_backbone}/{{task}}/baselines.log",
        benchmark:
            f"{RESULTS}/benchmarks/generate/{_backbone}/{{task}}/baselines.tsv"
        threads: THREADS
        resources:
            gpu=GPU,
        conda:
            CONDA_ENV
        script:
            "../scripts/generate.py"

    workflow.ruleorder(f"generate_baselines_{_backbone}", "generate")  # what `ruleorder: a > b` compiles to
