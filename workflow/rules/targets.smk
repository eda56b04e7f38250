# A cell or generations path that names a backbone, task or method form this profile does not have
# matches no rule, and Snakemake would only say "No rule to produce". This rule matches exactly those
# paths (the negative look-ahead leaves every valid one to generate and score), and fails while the
# DAG is built with the names the profile does have.
VALID_TARGET = (
    f"(?:{'|'.join(PLAN.backbones)})/(?:{'|'.join(PLAN.tasks)})/(?:{METHOD_PATTERN})\\.jsonl?$"
)


rule unknown_target:
    """Fails with the backbones, tasks and method forms of the profile (no job ever runs)."""
    input:
        unknown_target_error,
    output:
        f"{RESULTS}/{{stage}}/{{rest}}",
    wildcard_constraints:
        stage="cells|generations",
        rest=f"(?!{VALID_TARGET}).+",
    localrule: True
