"""Table 6: the claims scorecard, per claim and backbone, and every comparison behind it (reporting/claims.py)."""

from __future__ import annotations

from dataclasses import asdict, fields

import pandas as pd

from dynamax_bench.reporting import claims
from dynamax_bench.reporting.claims import Outcome
from dynamax_bench.reporting.tables.render import DIFF, HI, LO, PaperInputs, Table

NAMES = {"a": "A", "a_value": "A value", "b": "B", "b_value": "B value", "difference": f"A - B{DIFF}",
         "lo": f"A - B{DIFF}{LO}", "hi": f"A - B{DIFF}{HI}", "p_value": "p", "level": "Holm level",
         "ceiling": "oracle decode savings (ceiling)"}


def claims_tables(cells: list[dict], evidence: dict) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """The scorecard (one row per claim and backbone), every comparison behind it, and the totals."""
    rows, outcomes = claims.claims_scorecard(cells, evidence)
    comparisons = pd.DataFrame([asdict(o) for o in outcomes], columns=[f.name for f in fields(Outcome)])
    comparisons = comparisons.astype({"n": "Int64", "groups": "Int64"}).rename(columns=NAMES)
    return pd.DataFrame(rows), comparisons, claims.counts(outcomes)


def caption(inputs: PaperInputs, totals: dict[str, int], lossless: bool) -> str:
    """`lossless`: the run has spec-* rows (config/lossless.yaml), so the scorecard carries their row."""
    evidence = inputs.evidence
    asked = "Claims of the paper (and whether lossless speculation beats them)" if lossless else "Claims of the paper"
    return (f"{asked}, decided on this run per backbone: "
            f"{totals['decided']} of {totals['comparisons']} comparisons decided ({totals['holds']} holds, {totals['fails']} fails, {totals['equivalent']} "
            f"equivalent; {totals['inconclusive']} inconclusive, {totals['not competent']} not competent). Paired "
            f"bootstrap over groups of samples, Holm over every comparison at alpha {1 - evidence['confidence']:.2f}, "
            f"practical margins stated in the profile, at least {evidence['min_samples']} samples, and a competence "
            "floor on each backbone's full model")


def tables(inputs: PaperInputs) -> list[Table]:
    scorecard, comparisons, totals = claims_tables(inputs.cells, inputs.evidence)
    return [
        Table("Table 6: claims scorecard", "table6_claims", scorecard,
              caption(inputs, totals, lossless=bool((comparisons["claim"] == "lossless").any()))),
        Table("Table 6 (every comparison)", "table6_claims_comparisons", comparisons,
              "Every comparison behind the claims scorecard: sides, paired difference D = A - B and its interval at "
              "the comparison's Holm level, the margin, the p-value, n samples in its groups, the verdict and why, and the oracle's decode savings on that "
              "backbone and task beside savings comparisons (the ceiling at consistency 1)"),
    ]
