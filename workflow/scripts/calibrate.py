from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0])
from dynamax_bench.calibration.calibrate import CalibrationSettings, calibrate_task  # noqa: E402
from dynamax_bench.classifiers.checkpoints import checkpoint_source  # noqa: E402
from dynamax_bench.spec import DecodeSpec, TaskSpec  # noqa: E402

calibrate_task(
    DecodeSpec.from_dict(snakemake.params.spec),
    TaskSpec.from_dict(snakemake.params.task),
    snakemake.input.backbone,
    checkpoint_source(snakemake.input.classifiers),
    snakemake.input.flops,
    CalibrationSettings.from_dict(snakemake.params.settings),
    snakemake.output[0],
)
