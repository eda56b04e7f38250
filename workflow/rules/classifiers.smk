# What each training rule reads of the distill section: a change reruns exactly these jobs.
rule extract_oracle:
    """One backbone pass over the corpus: exit hidden states and top-k label ranks for every kind."""
    input:
        backbone=PLAN.backbone_dir("{backbone}"),
        corpus=f"{RESULTS}/corpus.jsonl",
    output:
        directory(f"{RESULTS}/oracle/{{backbone}}"),
    params:
        runtime=RUNTIME,
        exits=lambda w: config["backbones"][w.backbone].get("exits"),
        store={k: PLAN.distill[k] for k in ("max_length", "store_dtype", "shard_mb")},
        device=config["runtime"]["device"],
        dtype=config["runtime"]["dtype"],
    log:
        f"{LOGS}/extract_oracle/{{backbone}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/extract_oracle/{{backbone}}.tsv"
    threads: THREADS
    priority: CRITICAL_PATH
    resources:
        gpu=GPU,
    conda:
        CONDA_ENV
    script:
        "../scripts/extract_oracle.py"


rule select_top_k:
    """Train the probe kind at every candidate k in one pass; choose k on the validation split."""
    input:
        oracle=f"{RESULTS}/oracle/{{backbone}}",
    output:
        f"{RESULTS}/top_k/{{backbone}}.json",
    params:
        runtime=RUNTIME,
        probe=PLAN.probe,
        options=PLAN.kind_options(PLAN.probe),
        settings={**PLAN.training_settings, "top_k": PLAN.distill["top_k"]},
        thresholds=config["classifiers"]["thresholds"],
    log:
        f"{LOGS}/select_top_k/{{backbone}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/select_top_k/{{backbone}}.tsv"
    threads: THREADS
    priority: CRITICAL_PATH
    resources:
        gpu=GPU,
    conda:
        CONDA_ENV
    script:
        "../scripts/select_top_k.py"


rule distill:
    """Train one classifier kind at every exit of a frozen backbone, at the chosen top-k."""
    input:
        oracle=f"{RESULTS}/oracle/{{backbone}}",
        top_k=f"{RESULTS}/top_k/{{backbone}}.json",
    output:
        weights=PLAN.classifier_path("{backbone}", "{kind}"),
        metrics=PLAN.classifier_path("{backbone}", "{kind}", ".json"),
    params:
        runtime=RUNTIME,
        options=lambda w: PLAN.kind_options(w.kind),
        settings=PLAN.training_settings,
        thresholds=config["classifiers"]["thresholds"],
    log:
        f"{LOGS}/distill/{{backbone}}/{{kind}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/distill/{{backbone}}/{{kind}}.tsv"
    threads: THREADS
    priority: CRITICAL_PATH
    resources:
        gpu=GPU,
    conda:
        CONDA_ENV
    script:
        "../scripts/distill.py"


rule exit_weight_ablation:
    """Uniform vs decaying exit weights, per-exit vs shared parameters, on the probe kind."""
    input:
        oracle=f"{RESULTS}/oracle/{{backbone}}",
        top_k=f"{RESULTS}/top_k/{{backbone}}.json",
    output:
        PLAN.ablation_path("{backbone}"),
    params:
        runtime=RUNTIME,
        probe=PLAN.probe,
        options=PLAN.kind_options(PLAN.probe),
        settings=PLAN.training_settings,
        thresholds=config["classifiers"]["thresholds"],
    log:
        f"{LOGS}/exit_weight_ablation/{{backbone}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/exit_weight_ablation/{{backbone}}.tsv"
    threads: THREADS
    resources:
        gpu=GPU,
    conda:
        CONDA_ENV
    script:
        "../scripts/exit_weight_ablation.py"
