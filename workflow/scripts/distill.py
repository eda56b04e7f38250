from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0])
from dynamax_bench.classifiers.distill import distill  # noqa: E402

distill(snakemake.config, snakemake.input.oracle, snakemake.wildcards.kind, snakemake.output.weights)
