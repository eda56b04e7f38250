from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0])
from dynamax_bench.generation.generate import generate_cell  # noqa: E402 (after offline set-up)
from dynamax_bench.spec import DecodeSpec, TaskSpec  # noqa: E402

generate_cell(
    DecodeSpec.from_dict(snakemake.params.spec),
    TaskSpec.from_dict(snakemake.params.task),
    snakemake.input.backbone,
    snakemake.output[0],
    snakemake.input.get("classifiers"),
)
