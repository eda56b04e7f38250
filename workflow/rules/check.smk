REFERENCE = f"{workflow.basedir}/reference/{PLAN.profile}.json"
REFERENCE_EXISTS = os.path.exists(REFERENCE)


rule check:
    """Compare this run's cells with reference/<profile>.json within tolerances; fails on a miss.
    A missing reference fails the job with the command that creates it."""
    input:
        cells=PLAN.cells(),
        # an input when it exists, so an edited reference reruns the check
        reference=[REFERENCE] if REFERENCE_EXISTS else [],
    output:
        f"{RESULTS}/check.txt",
    params:
        runtime=RUNTIME,
        # only where the reference does not exist yet: the error names the path it was looked for at
        missing_reference="" if REFERENCE_EXISTS else REFERENCE,
    log:
        f"{LOGS}/check.log",
    benchmark:
        f"{RESULTS}/benchmarks/check.tsv"
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/check.py"
