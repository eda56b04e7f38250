rule flops:
    """fvcore counts per block (layer, head, fill work, exit methods) at fixed shapes."""
    input:
        backbone="resources/backbones/{backbone}",
    output:
        f"{RESULTS}/flops/{{backbone}}.json",
    params:
        runtime=RUNTIME,
        context_length=config["flops"]["context_length"],
        kinds=config["classifiers"]["kinds"],
        options=config["classifiers"]["options"],
        exits=lambda w: config["backbones"][w.backbone]["exits"],
    log:
        f"{LOGS}/flops/{{backbone}}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/flops.py"
