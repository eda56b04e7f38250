from dynamax_bench.runtime import set_up

set_up(snakemake.config, snakemake.log[0])
from dynamax_bench.costs.latency import measure_latency  # noqa: E402

measure_latency(
    snakemake.config,
    snakemake.input.backbone,
    snakemake.wildcards.method,
    snakemake.output[0],
    snakemake.input.flops,
    snakemake.input.get("classifiers"),
)
