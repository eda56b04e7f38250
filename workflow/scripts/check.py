from dynamax_bench.runtime import set_up

set_up(snakemake.params.runtime, snakemake.log[0], torch=False)  # runs no model
from pathlib import Path  # noqa: E402

from dynamax_bench.reporting.check import check_run  # noqa: E402

results = Path(snakemake.output[0]).parent
reference = snakemake.input.reference[0] if snakemake.input.reference else snakemake.params.missing_reference
if not check_run(results, reference, snakemake.output[0]):
    raise SystemExit(f"check failed: values outside tolerance against {reference} (table in {snakemake.log[0]})")
