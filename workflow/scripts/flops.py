from dynamax_bench.runtime import set_up

set_up(snakemake.config, snakemake.log[0])
from dynamax_bench.costs.flops import flops_table  # noqa: E402

flops_table(snakemake.config, snakemake.input.backbone, snakemake.output[0])
