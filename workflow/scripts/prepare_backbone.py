from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0])
from dynamax_bench.backbones.prepare import prepare_backbone  # noqa: E402 (after offline set-up)

prepare_backbone(
    snakemake.wildcards.backbone,
    snakemake.params.spec,
    snakemake.output[0],
    seed=snakemake.params.runtime["seed"],
    offline=snakemake.params.runtime["offline"],
)
