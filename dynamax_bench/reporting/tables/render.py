"""What every table shares: a run's inputs, the table record, its columns for an estimate and its
interval, and the writing of one table as Markdown, CSV and LaTeX."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dynamax_bench.files import atomic_path
from dynamax_bench.reporting.statistics import IntervalSettings, paired_difference
from dynamax_bench.spec import method_of

LO, HI, STDERR = " lo", " hi", " stderr"  # companion columns of an estimate in a table's frame
DIFF = " diff"  # a paired difference: shown with its sign


@dataclass(frozen=True)
class PaperInputs:
    """Everything the tables and figures of one run read (the paper_tables rule's inputs, parsed).

    run: `provenance.run_description` of the profile; evidence: its `evidence` section; backbones:
    name -> `dynamax_backbone.json` metadata where the folder has it."""

    run: dict
    cells: list[dict]
    classifiers: list[dict]
    latency: list[dict]
    flops: list[dict]
    backbones: dict[str, dict]
    evidence: dict
    calibrations: list[dict] = ()  # the calibrate jobs' files
    ablations: list[dict] = ()  # the exit_weight_ablation jobs' files

    @property
    def settings(self) -> IntervalSettings:
        return IntervalSettings.from_dict(self.evidence)

    @property
    def level(self) -> str:
        """The intervals' coverage as captions print it, e.g. `95%`."""
        return f"{self.settings.confidence:.0%}"


@dataclass(frozen=True)
class Table:
    """One table: its title on the index page, its file stem, its rows, its caption."""

    title: str
    stem: str
    frame: pd.DataFrame
    caption: str


def for_display(df: pd.DataFrame) -> pd.DataFrame:
    """Empty cells stay empty: a column that only some rows have (a metric of another task) holds
    NaN, which tabulate would print as `nan`."""
    return df.astype(object).where(df.notna(), None)


def number(value: float, column: str) -> str:
    return f"{value:+.3f}" if column.endswith(DIFF) else f"{value:.3f}"


def with_intervals(df: pd.DataFrame) -> pd.DataFrame:
    """Markdown and LaTeX: each estimate as `0.672 [0.547, 0.781]` (its lo/hi columns folded in,
    stderr columns left to the CSV); a row without an interval shows its value alone."""
    out = df.copy()
    for column in [c for c in df.columns if f"{c}{LO}" in df.columns]:
        out[column] = [
            None if pd.isna(v) else number(v, column) if pd.isna(lo) else
            f"{number(v, column)} [{number(lo, column)}, {number(hi, column)}]"
            for v, lo, hi in zip(df[column], df[f"{column}{LO}"], df[f"{column}{HI}"])
        ]
    folded = [c for c in df.columns if c.endswith((LO, HI, STDERR)) and c.rsplit(" ", 1)[0] in df.columns]
    return out.drop(columns=folded)


def write_table(df: pd.DataFrame, out_dir: Path, stem: str, caption: str) -> list[str]:
    """One table as Markdown, CSV (every estimate with separate lo, hi and stderr columns) and
    LaTeX (booktabs); returns the file names."""
    names = [f"{stem}.md", f"{stem}.csv", f"{stem}.tex"]
    shown = with_intervals(df)
    markdown = for_display(shown).to_markdown(index=False, floatfmt=".3f", missingval="")
    with atomic_path(out_dir / names[0]) as tmp:
        tmp.write_text(f"## {caption}\n\n{markdown}\n", encoding="utf-8")
    with atomic_path(out_dir / names[1]) as tmp:
        df.to_csv(tmp, index=False, float_format="%.10g")
    with atomic_path(out_dir / names[2]) as tmp:
        latex = shown.to_latex(index=False, float_format="%.3f", caption=caption, label=f"tab:{stem}", escape=True,
                               na_rep="")
        tmp.write_text(latex, encoding="utf-8")
    return names


def estimate_columns(column: str, entry: dict | None) -> dict[str, float | None]:
    """An estimate of a cell (`intervals.estimates` entry) as a table's value, lo, hi (and stderr) columns."""
    if entry is None:
        return {column: None, f"{column}{LO}": None, f"{column}{HI}": None}
    out = {column: entry["value"], f"{column}{LO}": entry["lo"], f"{column}{HI}": entry["hi"]}
    if "stderr" in entry:
        out[f"{column}{STDERR}"] = entry["stderr"]
    return out


def difference_columns(column: str, a: dict, b: dict, quantity: str, settings: IntervalSettings) -> dict:
    """The paired difference quantity(a) - quantity(b) over the same samples, as table columns."""
    return estimate_columns(column, paired_difference(a, b, quantity, settings).to_dict())


def method_order(cell: dict) -> tuple:
    """full first, then pruning by depth, the oracle, self-speculative decoding by E and K, then early-exit
    methods by name."""
    method = method_of(cell)
    rank = {"full": 0, "prune": 1, "oracle": 2, "spec": 3, "ee": 4}[method.kind]
    return (rank, method.prune, method.draft_layer or 0, method.draft_tokens or 0,
            method.name if method.kind == "ee" else "")


def primary_metric(cell: dict) -> str:
    """The task metric a comparison table shows: the first one the task declares."""
    return next(iter(cell["metrics"]))
