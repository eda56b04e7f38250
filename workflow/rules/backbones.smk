rule prepare_backbone:
    """Build resources/backbones/<name>/: safetensors, tokenizer, config (GGUF, seeded random or hub)."""
    output:
        directory("resources/backbones/{backbone}"),
    params:
        spec=lambda w: config["backbones"][w.backbone],
    log:
        "logs/prepare_backbone/{backbone}.log",
    threads: THREADS
    conda:
        CONDA_ENV
    script:
        "../scripts/prepare_backbone.py"
