rule check:
    """Compare this run's cells with reference/<profile>.json within tolerances; fails on a miss."""
    input:
        cells=all_cells(),
        reference=f"{workflow.basedir}/reference/{PROFILE}.json",
    output:
        f"{RESULTS}/check.txt",
    params:
        runtime=RUNTIME,
    log:
        f"{LOGS}/check.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/check.py"
