from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0])
from dynamax_bench.backbones.train_mamba2 import train_distilled_backbone  # noqa: E402 (after offline set-up)

train_distilled_backbone(
    snakemake.wildcards.backbone,
    snakemake.params.spec,
    snakemake.input.teacher,
    snakemake.input.corpus,
    snakemake.output[0],
    snakemake.params.work_dir,
    seed=snakemake.params.runtime["seed"],
)
