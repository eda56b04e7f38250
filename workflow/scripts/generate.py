from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0])
from dynamax_bench.generation.generate import generate_cells  # noqa: E402 (after offline set-up)
from dynamax_bench.classifiers.checkpoints import checkpoint_source  # noqa: E402
from dynamax_bench.spec import DecodeSpec, TaskSpec  # noqa: E402

classifiers = checkpoint_source(snakemake.input.get("classifiers"))  # one file, or a sweep's folder

generate_cells(
    [DecodeSpec.from_dict(spec) for spec in snakemake.params.specs],
    TaskSpec.from_dict(snakemake.params.task),
    snakemake.input.backbone,
    list(snakemake.output),
    classifiers,
)
