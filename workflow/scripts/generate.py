from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0])
from dynamax_bench.calibration.calibrate import resolve_specs  # noqa: E402 (after offline set-up)
from dynamax_bench.classifiers.checkpoints import checkpoint_source  # noqa: E402
from dynamax_bench.generation.generate import generate_cells  # noqa: E402
from dynamax_bench.spec import DecodeSpec, TaskSpec  # noqa: E402

classifiers = checkpoint_source(snakemake.input.get("classifiers"))  # one file, or a sweep's folder
specs = [DecodeSpec.from_dict(spec) for spec in snakemake.params.specs]
if "calibration" in snakemake.input.keys():  # calibrated rows: their thresholds, from the calibrate job
    specs = resolve_specs(specs, snakemake.input.calibration)

generate_cells(
    specs,
    TaskSpec.from_dict(snakemake.params.task),
    snakemake.input.backbone,
    list(snakemake.output),
    classifiers,
    full_generations=snakemake.input.get("full"),
)
