from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0])
from dynamax_bench.classifiers.oracle import extract_oracle  # noqa: E402

extract_oracle(snakemake.config, snakemake.input.backbone, snakemake.input.corpus, snakemake.output[0])
