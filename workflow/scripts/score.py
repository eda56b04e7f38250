from dynamax_bench.runtime import set_up

set_up(snakemake.config, snakemake.log[0])
from dynamax_bench.reporting.score import score_cell  # noqa: E402

score_cell(
    snakemake.config,
    snakemake.input.backbone,
    snakemake.wildcards.task,
    snakemake.wildcards.method,
    snakemake.input.generations,
    snakemake.input.full,
    snakemake.output[0],
    snakemake.input.flops,
)
