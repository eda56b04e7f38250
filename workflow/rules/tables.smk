rule paper_tables:
    """Every table and figure of the study, from the cell files."""
    input:
        cells=PLAN.cells(),
        classifiers=PLAN.classifier_metrics(),
        calibration=PLAN.calibrations(),
        ablations=PLAN.ablations(),
        latency=PLAN.latency_targets(),
        flops=PLAN.flops_targets(),
        backbones=PLAN.backbone_dirs(),
    output:
        report(
            directory("paper_tables"),
            patterns=["{name}.png", "{name}.md"],
            caption="../report/paper_tables.rst",
            category="Tables and figures",
        ),
    params:
        runtime=RUNTIME,
        run=run_description(config),
        evidence=config["evidence"],
    log:
        f"{LOGS}/paper_tables.log",
    benchmark:
        f"{RESULTS}/benchmarks/paper_tables.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/paper_tables.py"
