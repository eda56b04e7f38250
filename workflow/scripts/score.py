from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0], torch=False)  # runs no model
from dynamax_bench.reporting.score import score_cell  # noqa: E402
from dynamax_bench.reporting.statistics import IntervalSettings  # noqa: E402
from dynamax_bench.spec import TaskSpec  # noqa: E402

score_cell(
    TaskSpec.from_dict(snakemake.params.task),
    snakemake.input.generations,
    snakemake.input.full,
    snakemake.input.backbone,
    snakemake.input.flops,
    snakemake.output[0],
    profile=snakemake.params.profile,
    evidence=IntervalSettings.from_dict(snakemake.params.evidence),
)
