from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0])
from dynamax_bench.costs.flops import flops_table  # noqa: E402

flops_table(
    snakemake.input.backbone,
    snakemake.output[0],
    context_length=snakemake.params.context_length,
    kinds=snakemake.params.kinds,
    options=snakemake.params.options,
    exits=snakemake.params.exits,
)
