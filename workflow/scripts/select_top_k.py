from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0])
from dynamax_bench.classifiers.distill import select_top_k  # noqa: E402

select_top_k(snakemake.input.oracle, snakemake.output[0], probe=snakemake.params.probe,
             options=snakemake.params.options, settings=snakemake.params.settings,
             thresholds=snakemake.params.thresholds, seed=snakemake.params.runtime["seed"])
