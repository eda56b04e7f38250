from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0])
from dynamax_bench.backbones.prepare import prepare_backbone  # noqa: E402 (after offline set-up)
from dynamax_bench.profile_checks import check_depth  # noqa: E402

meta = prepare_backbone(
    snakemake.wildcards.backbone,
    snakemake.params.spec,
    snakemake.output[0],
    seed=snakemake.params.runtime["seed"],
    offline=snakemake.params.runtime["offline"],
)
# The depth of a GGUF or hub backbone is known only now: its exits and pruning levels are checked
# here, in the first job, rather than failing every job that reads them.
check_depth(snakemake.wildcards.backbone, snakemake.params.spec, meta["num_layers"])
