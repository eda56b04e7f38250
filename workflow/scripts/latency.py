from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0])
from dynamax_bench.costs.latency import measure_latencies  # noqa: E402
from dynamax_bench.classifiers.checkpoints import checkpoint_source  # noqa: E402
from dynamax_bench.spec import DecodeSpec, TaskSpec  # noqa: E402

classifiers = checkpoint_source(snakemake.input.get("classifiers"))  # one file, or a sweep's folder

measure_latencies(
    [DecodeSpec.from_dict(spec) for spec in snakemake.params.specs],
    TaskSpec.from_dict(snakemake.params.task),
    snakemake.params.settings,
    snakemake.input.backbone,
    list(snakemake.output),
    snakemake.input.flops,
    classifiers,
)
