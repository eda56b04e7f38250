from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0])
from dynamax_bench.corpus import prepare_corpus  # noqa: E402

prepare_corpus(snakemake.params.corpus, snakemake.params.runtime["seed"], snakemake.output[0], dict(snakemake.input.items()))
