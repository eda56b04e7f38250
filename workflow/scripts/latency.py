from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0])
from dynamax_bench.costs.latency import measure_latency  # noqa: E402
from dynamax_bench.spec import DecodeSpec, TaskSpec  # noqa: E402

measure_latency(
    DecodeSpec.from_dict(snakemake.params.spec),
    TaskSpec.from_dict(snakemake.params.task),
    snakemake.params.settings,
    snakemake.input.backbone,
    snakemake.output[0],
    snakemake.input.flops,
    snakemake.input.get("classifiers"),
)
