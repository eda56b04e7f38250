from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0], torch=False)  # runs no model
from dynamax_bench.reporting.paper_tables import build_paper_tables  # noqa: E402

build_paper_tables(
    snakemake.params.run,
    snakemake.input.cells,
    snakemake.output[0],
    evidence=snakemake.params.evidence,
    classifier_paths=snakemake.input.classifiers,
    latency_paths=snakemake.input.latency,
    flops_paths=snakemake.input.flops,
    backbone_dirs=snakemake.input.backbones,
    calibration_paths=snakemake.input.calibration,
    ablation_paths=snakemake.input.ablations,
)
