from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0])
from dynamax_bench.classifiers.oracle import extract_oracle  # noqa: E402

extract_oracle(snakemake.input.backbone, snakemake.input.corpus, snakemake.output[0], exits=snakemake.params.exits,
               device=snakemake.params.device, dtype=snakemake.params.dtype, **snakemake.params.store)
