from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0])
from dynamax_bench.classifiers.ablation import exit_weight_ablation  # noqa: E402

exit_weight_ablation(snakemake.input.oracle, snakemake.input.top_k, snakemake.output[0], probe=snakemake.params.probe,
                     options=snakemake.params.options, settings=snakemake.params.settings,
                     thresholds=snakemake.params.thresholds, seed=snakemake.params.runtime["seed"])
