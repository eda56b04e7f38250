"""Table files: what a reader sees for cells that a row does not have."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from dynamax_bench.reporting.tables import write_table


def test_missing_values_are_blank_not_nan(tmp_path: Path) -> None:
    df = pd.DataFrame([
        {"task": "triviaqa", "EM": 0.25, "n": 16},
        {"task": "truthfulqa", "bleu_max": 12.5, "n": 8},
    ])
    write_table(df, tmp_path, "t", "caption")
    markdown = (tmp_path / "t.md").read_text()
    assert "nan" not in markdown.lower()
    assert "| triviaqa   | 0.250 |  16 |            |" in markdown
    assert "| truthfulqa |       |   8 |     12.500 |" in markdown
    csv = pd.read_csv(tmp_path / "t.csv")
    assert csv.loc[0, "EM"] == 0.25 and math.isnan(csv.loc[1, "EM"])
    assert "nan" not in (tmp_path / "t.tex").read_text().lower()
