REFERENCE = f"{workflow.basedir}/reference/{PROFILE}.json"


rule check:
    """Compare this run's cells with reference/<profile>.json within tolerances; fails on a miss.
    A missing reference fails the job with the command that creates it."""
    input:
        cells=all_cells(),
        # an input when it exists, so an edited reference reruns the check
        reference=[REFERENCE] if os.path.exists(REFERENCE) else [],
    output:
        f"{RESULTS}/check.txt",
    params:
        runtime=RUNTIME,
        reference=REFERENCE,
    log:
        f"{LOGS}/check.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/check.py"
