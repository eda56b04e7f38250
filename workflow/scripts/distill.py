from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0])
from dynamax_bench.classifiers.distill import distill  # noqa: E402

distill(snakemake.input.oracle, snakemake.input.top_k, snakemake.wildcards.kind, snakemake.output.weights,
        options=snakemake.params.options, settings=snakemake.params.settings,
        thresholds=snakemake.params.thresholds, seed=snakemake.params.runtime["seed"])
