from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0], torch=False)  # runs no model
from dynamax_bench.reporting.score import score_cell  # noqa: E402
from dynamax_bench.reporting.statistics import IntervalSettings  # noqa: E402
from dynamax_bench.spec import TaskSpec  # noqa: E402

task = TaskSpec.from_dict(snakemake.params.task)
evidence = IntervalSettings.from_dict(snakemake.params.evidence)
generations = snakemake.input.generations  # one file (score), or a sweep's in the order of its outputs
for path, out_path in zip([generations] if isinstance(generations, str) else generations, snakemake.output,
                          strict=True):
    score_cell(task, path, snakemake.input.full, snakemake.input.backbone, snakemake.input.flops, out_path,
               profile=snakemake.params.profile, evidence=evidence)
