rule paper_tables:
    """Every table and figure of the study, from the cell files."""
    input:
        cells=all_cells(),
        classifiers=all_classifier_metrics(),
    output:
        directory("paper_tables"),
    log:
        f"{LOGS}/paper_tables.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/paper_tables.py"
