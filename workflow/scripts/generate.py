from dynamax_bench.runtime import set_up

set_up(snakemake.config, snakemake.log[0])
from dynamax_bench.generation.generate import generate_cell  # noqa: E402 (after offline set-up)

generate_cell(
    snakemake.config,
    snakemake.input.backbone,
    snakemake.wildcards.task,
    snakemake.wildcards.method,
    snakemake.output[0],
    snakemake.input.get("classifiers"),
)
