"""The calibrated rows, as tables: what each calibration chose, and what it delivered on the evaluated samples.

Table 8 (calibration): per backbone, task, exit kind, policy and target, the threshold the calibrate stage
chose on the calibration split (or why none was certified), and on the evaluated split the consistency it
achieved and the decode savings it bought. Learn-Then-Test promises consistency >= target with probability
at least 1 - epsilon over the calibration draw, for the distribution the calibration split was drawn from;
a cell whose evaluated consistency falls below its target is counted as a violation (its point estimate),
and as a clear one when its whole interval lies below the target.

Table 9 (savings at each target): the decode savings each kind buys at each consistency target, side by
side, with intervals: the summary the claims compare.
"""

from __future__ import annotations

from collections import defaultdict

import pandas as pd

from dynamax_bench.reporting.statistics import estimate_of
from dynamax_bench.reporting.tables.render import PaperInputs, Table
from dynamax_bench.spec import format_threshold, method_of

SAVINGS = "flops.decode_savings"
CONSISTENCY = "consistency.output_match"


def _estimate(prefix: str, entry: dict | None) -> dict:
    if entry is None:
        return {prefix: None, f"{prefix} lo": None, f"{prefix} hi": None}
    return {prefix: entry["value"], f"{prefix} lo": entry["lo"], f"{prefix} hi": entry["hi"]}


def _calibration_entry(calibrations: dict, cell: dict) -> dict:
    m = method_of(cell)
    entry = calibrations.get((cell["backbone"], cell["task"]), {}).get("methods", {}).get(m.exit_kind, {}).get(m.policy, {})
    if m.target == "consistency":
        return entry.get("consistency", {}).get(format_threshold(m.target_value), {})
    return entry.get("prune", {}).get(str(int(m.target_value)), {})


def calibration_table(cells: list[dict], calibrations: list[dict]) -> pd.DataFrame:
    """Table 8: every calibrated row, its choice on the calibration split and its outcome on the evaluated one."""
    by_task = {(c["backbone"], c["task"]): c for c in calibrations}
    rows = []
    for cell in cells:
        m = method_of(cell)
        if m.kind != "ee" or not m.calibrated:
            continue
        chosen = _calibration_entry(by_task, cell)
        achieved = estimate_of(cell, CONSISTENCY)
        row = {"backbone": cell["backbone"], "task": cell["task"], "kind": m.exit_kind, "policy": m.policy,
               "target": (f"consistency >= {m.target_value:g}" if m.target == "consistency"
                          else f"decode savings of prune{int(m.target_value)}"),
               "threshold": m.threshold, "certified": "yes" if m.certified else "no",
               "calibration": chosen.get("reason") or (f"{chosen.get('thresholds_tested', '?')} thresholds tested"
                                                       if m.target == "consistency" else
                                                       f"{len(chosen.get('decodes', []))} decodes"),
               **_estimate("consistency", achieved), **_estimate("decode savings", cell["intervals"]["estimates"].get(SAVINGS)),
               "n": achieved["n"]}
        if m.target == "consistency" and m.certified:
            row["violation"] = ("clear" if achieved["hi"] < m.target_value else
                                "yes" if achieved["value"] < m.target_value else "no")
        rows.append(row)
    order = ["backbone", "task", "kind", "policy", "target"]
    return pd.DataFrame(rows).sort_values(order, kind="stable").reset_index(drop=True) if rows else pd.DataFrame(rows)


def violations(table: pd.DataFrame) -> dict[str, int]:
    """Learn-Then-Test's record on the evaluated samples: certified consistency rows, and those below target."""
    if table.empty or "violation" not in table:
        return {"certified": 0, "below_target": 0, "clearly_below": 0}
    certified = table[table["violation"].notna()]
    return {"certified": len(certified), "below_target": int((certified["violation"] != "no").sum()),
            "clearly_below": int((certified["violation"] == "clear").sum())}


def savings_at_targets(cells: list[dict]) -> pd.DataFrame:
    """Table 9: per backbone, task, policy and consistency target, each kind's decode savings (0 where no
    threshold was certified: it runs as the full model)."""
    rows: dict[tuple, dict] = defaultdict(dict)
    for cell in cells:
        m = method_of(cell)
        if m.kind != "ee" or m.target != "consistency":
            continue
        key = (cell["backbone"], cell["task"], m.policy, m.target_value)
        rows[key].update(_estimate(m.exit_kind, cell["intervals"]["estimates"].get(SAVINGS)))
    out = [{"backbone": b, "task": t, "policy": p, "consistency target": c, **values}
           for (b, t, p, c), values in sorted(rows.items())]
    return pd.DataFrame(out)


def tables(inputs: PaperInputs) -> list[Table]:
    table = calibration_table(inputs.cells, inputs.calibrations)
    record = violations(table)
    epsilon = {c["epsilon"] for c in inputs.calibrations}
    return [
        Table("Table 8: calibrated thresholds", "table8_calibration", table,
              f"Thresholds calibrated on each task's calibration split (disjoint from the evaluated samples), per "
              f"target; consistency targets certified by Learn-Then-Test at epsilon {', '.join(map(str, sorted(epsilon)))} "
              f"(fixed-sequence down the grid, exact binomial p-value over units: a CoQA story, a question). On the "
              f"evaluated samples: {record['below_target']} of {record['certified']} certified rows below their "
              f"target by the point estimate, {record['clearly_below']} by their whole {inputs.level} interval"),
        Table("Table 9: decode savings at each consistency target", "table9_savings_at_targets",
              savings_at_targets(inputs.cells),
              f"Decode savings each exit kind buys at each calibrated consistency target ({inputs.level} intervals; "
              "0 where no threshold was certified: the row runs as the full model)"),
    ]
