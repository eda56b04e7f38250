"""The `paper_tables` rule: every table (Markdown, CSV, LaTeX), figure (PNG, PDF) and the index page
of a run, from its cell, classifier, latency and flops files.

`TABLES` and `FIGURES` are the registries, in the order of the index page: a new table is a module
of `reporting/tables` with a `tables(inputs)` function, plus its line in `TABLES`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dynamax_bench.backbones.meta import read_backbone_meta
from dynamax_bench.files import atomic_path, dumps, read_json
from dynamax_bench.provenance import run_record
from dynamax_bench.reporting.claims import Evidence, competence
from dynamax_bench.reporting.figures import exit_histograms, measured_vs_predicted, tradeoff_curves
from dynamax_bench.reporting.index_page import index_page
from dynamax_bench.reporting.tables import (
    agreement,
    calibration,
    distillation,
    main_results,
    policies,
    pruning,
    scorecard,
    setup,
    speculative,
)
from dynamax_bench.reporting.tables.render import PaperInputs, Table, write_table

TABLES: list[Callable[[PaperInputs], list[Table]]] = [
    setup.tables,  # Table 1
    distillation.tables,  # Tables 2, 2b
    main_results.tables,  # Table 3, whole and per task
    pruning.tables,  # Table 4
    policies.tables,  # Table 5
    scorecard.tables,  # Table 6 and its comparisons
    agreement.tables,  # Table 7
    calibration.tables,  # Tables 8, 9
    speculative.tables,  # Tables 10, 10b, 10c (runs with spec-* cells)
]
# title on the index page -> the function that draws it into a folder and returns its file names
FIGURES: dict[str, Callable[[PaperInputs, Path], list[str]]] = {
    "Figure 1: quality against decode savings": lambda inputs, out: tradeoff_curves(
        inputs.cells, out, inputs.settings.confidence, competence(inputs.cells, Evidence.from_dict(inputs.evidence))),
    "Figure 2: exit-layer histograms": lambda inputs, out: exit_histograms(inputs.cells, out),
    "Figure 3: measured against predicted speedup": lambda inputs, out: measured_vs_predicted(inputs.latency, out,
                                                                                             inputs.settings),
}


def write_paper_tables(inputs: PaperInputs, out_dir: str | Path) -> None:
    """Write every registered table and figure, the index and the provenance record into `out_dir`
    (Snakemake's directory output)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[str]] = {}
    for build in TABLES:
        for table in build(inputs):
            written[table.title] = write_table(table.frame, out_dir, table.stem, table.caption)
    for title, draw in FIGURES.items():
        written[title] = draw(inputs, out_dir)
    with atomic_path(out_dir / "index.md") as tmp:
        tmp.write_text(index_page(inputs.run, inputs.cells, written, inputs.backbones, inputs.evidence), encoding="utf-8")
    with atomic_path(out_dir / "provenance.json") as tmp:
        tmp.write_text(dumps(run_record(inputs.run)), encoding="utf-8")


def build_paper_tables(run: dict, cell_paths: list[str | Path], out_dir: str | Path, evidence: dict,
                       classifier_paths: list[str | Path] = (), latency_paths: list[str | Path] = (),
                       flops_paths: list[str | Path] = (), backbone_dirs: list[str | Path] = (),
                       calibration_paths: list[str | Path] = (), ablation_paths: list[str | Path] = ()) -> None:
    """Read the rule's input files and write paper_tables/ (`write_paper_tables`). run:
    `provenance.run_description` of the profile; evidence: its `evidence` section."""
    inputs = PaperInputs(run=run, evidence=evidence, cells=[read_json(p) for p in cell_paths],
                         classifiers=[read_json(p) for p in classifier_paths],
                         latency=[read_json(p) for p in latency_paths], flops=[read_json(p) for p in flops_paths],
                         backbones={meta["name"]: meta for meta in map(read_backbone_meta, backbone_dirs)},
                         calibrations=[read_json(p) for p in calibration_paths],
                         ablations=[read_json(p) for p in ablation_paths])
    write_paper_tables(inputs, out_dir)
