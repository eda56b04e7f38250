rule prepare_corpus:
    """Distillation text: FineWeb-Edu (paper), local JSONL, or text the backbone writes (offline)."""
    input:
        **PLAN.corpus_backbones,
    output:
        f"{RESULTS}/corpus.jsonl",
    params:
        runtime=RUNTIME,
        corpus=config["corpus"],
    log:
        f"{LOGS}/prepare_corpus.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_corpus.tsv"
    threads: THREADS
    priority: CRITICAL_PATH
    resources:
        # a GPU only where a backbone writes the corpus (the paper profile streams FineWeb-Edu)
        gpu=GPU if PLAN.corpus_backbones else 0,
    conda:
        CONDA_ENV
    script:
        "../scripts/prepare_corpus.py"
