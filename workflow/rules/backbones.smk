rule prepare_backbone:
    """Build resources/backbones/<name>/: safetensors, tokenizer, config (GGUF, seeded random or hub)."""
    output:
        directory(PLAN.backbone_dir("{backbone}")),
    params:
        runtime=RUNTIME,
        spec=lambda w: config["backbones"][w.backbone],
    log:
        "logs/prepare_backbone/{backbone}.log",
    wildcard_constraints:
        backbone="|".join(PLAN.prepared_backbones) or "(?!)",
    threads: THREADS
    conda:
        CONDA_ENV
    script:
        "../scripts/prepare_backbone.py"


rule train_backbone:
    """Distil a Mamba-2 student from a Transformer teacher on the corpus (the offline Mamba-2 stand-in)."""
    input:
        teacher=lambda w: PLAN.teacher_dir(w.backbone),
        corpus=f"{RESULTS}/corpus.jsonl",
    output:
        directory(PLAN.backbone_dir("{backbone}")),
    params:
        runtime=RUNTIME,
        spec=lambda w: config["backbones"][w.backbone],
        # outside the output, so an interrupted run resumes from its last checkpoint
        work_dir="resources/training/{backbone}",
    log:
        "logs/train_backbone/{backbone}.log",
    benchmark:
        "resources/benchmarks/train_backbone/{backbone}.tsv"
    wildcard_constraints:
        backbone="|".join(PLAN.distilled_backbones) or "(?!)",
    # training runs at its own fixed thread count (source.training.threads: the weights' bits depend on it)
    threads: lambda w: config["backbones"][w.backbone]["source"]["training"]["threads"]
    priority: CRITICAL_PATH
    resources:
        gpu=GPU,
    conda:
        CONDA_ENV
    script:
        "../scripts/train_backbone.py"
