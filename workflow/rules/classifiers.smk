rule extract_oracle:
    """One backbone pass over the corpus: exit hidden states and top-k label ranks for every kind."""
    input:
        backbone="resources/backbones/{backbone}",
        corpus=f"{RESULTS}/corpus.jsonl",
    output:
        directory(f"{RESULTS}/oracle/{{backbone}}"),
    params:
        runtime=RUNTIME,
        exits=lambda w: config["backbones"][w.backbone].get("exits"),
        settings={k: config["distill"][k] for k in ("max_length", "heldout_fraction", "store_dtype")},
    log:
        f"{LOGS}/extract_oracle/{{backbone}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/extract_oracle/{{backbone}}.tsv"
    threads: THREADS
    resources:
        gpu=GPU,
    conda:
        CONDA_ENV
    script:
        "../scripts/extract_oracle.py"


rule distill:
    """Train one classifier kind at every exit of a frozen backbone against the oracle labels."""
    input:
        oracle=f"{RESULTS}/oracle/{{backbone}}",
    output:
        weights=f"{RESULTS}/classifiers/{{backbone}}/{{kind}}.safetensors",
        metrics=f"{RESULTS}/classifiers/{{backbone}}/{{kind}}.json",
    params:
        runtime=RUNTIME,
        options=lambda w: config["classifiers"]["options"].get(w.kind, {}),
        settings=config["distill"],
    log:
        f"{LOGS}/distill/{{backbone}}/{{kind}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/distill/{{backbone}}/{{kind}}.tsv"
    threads: THREADS
    resources:
        gpu=GPU,
    conda:
        CONDA_ENV
    script:
        "../scripts/distill.py"
