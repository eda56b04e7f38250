"""Table 6: the claims scorecard and every comparison behind it (reporting/claims.py)."""

from __future__ import annotations

from dataclasses import asdict, fields

import pandas as pd

from dynamax_bench.reporting import claims
from dynamax_bench.reporting.claims import Outcome
from dynamax_bench.reporting.tables.render import DIFF, HI, LO, PaperInputs, Table


def claims_tables(cells: list[dict], evidence: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The claims scorecard, one row per claim, and every comparison behind it
    (dynamax_bench/reporting/claims.py)."""
    rows, details = claims.claims_scorecard(cells, evidence)
    names = {"a": "A", "a_value": "A value", "b": "B", "b_value": "B value", "difference": f"A - B{DIFF}",
             "lo": f"A - B{DIFF}{LO}", "hi": f"A - B{DIFF}{HI}"}
    comparisons = pd.DataFrame([asdict(o) for o in details], columns=[f.name for f in fields(Outcome)])
    return pd.DataFrame(rows), comparisons.astype({"n": "Int64"}).rename(columns=names)


def tables(inputs: PaperInputs) -> list[Table]:
    scorecard, comparisons = claims_tables(inputs.cells, inputs.evidence)
    return [
        Table("Table 6: claims scorecard", "table6_claims", scorecard,
              f"Claims of the paper, checked on this run (paired {inputs.level} intervals, Bonferroni over each claim's "
              f"comparisons; fewer than {inputs.evidence['min_samples']} samples reads inconclusive)"),
        Table("Table 6 (every comparison)", "table6_claims_comparisons", comparisons,
              "Every comparison behind the claims scorecard: sides, paired difference D = A - B, its interval, n"),
    ]
