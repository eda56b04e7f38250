rule paper_tables:
    """Every table and figure of the study, from the cell files."""
    input:
        cells=all_cells(),
        classifiers=all_classifier_metrics(),
        latency=all_latency(),
        flops=all_flops(),
        backbones=expand("resources/backbones/{backbone}", backbone=backbone_names(config)),
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
    conda:
        CONDA_ENV
    script:
        "../scripts/paper_tables.py"
