rule flops:
    """fvcore counts per block (layer, head, fill work, exit methods) at fixed shapes, and exact
    per-length models of the layer prefill, the decode step and a stateful classifier's prompt pass."""
    input:
        backbone=PLAN.backbone_dir("{backbone}"),
    output:
        PLAN.flops_path("{backbone}"),
    params:
        runtime=RUNTIME,
        context_length=config["flops"]["context_length"],
        kinds=PLAN.all_exit_kinds,
        options={kind: PLAN.kind_options(kind) for kind in PLAN.all_exit_kinds},
        exits=lambda w: config["backbones"][w.backbone]["exits"],
    log:
        f"{LOGS}/flops/{{backbone}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/flops/{{backbone}}.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/flops.py"
