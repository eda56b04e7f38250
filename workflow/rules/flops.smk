rule flops:
    """fvcore counts per block (layer, head, fill work, exit methods) at fixed shapes."""
    input:
        backbone="resources/backbones/{backbone}",
    output:
        f"{RESULTS}/flops/{{backbone}}.json",
    params:
        flops=config["flops"],
        classifiers=config["classifiers"],
        exits=lambda w: config["backbones"][w.backbone].get("exits"),
    log:
        f"{LOGS}/flops/{{backbone}}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/flops.py"
