"""Table 3: the main results per backbone, task and method, whole and split by task."""

from __future__ import annotations

import pandas as pd

from dynamax_bench.reporting.speedups import speedups
from dynamax_bench.reporting.statistics import IntervalSettings, estimate_of
from dynamax_bench.reporting.tables.render import PaperInputs, Table, estimate_columns, method_order
from dynamax_bench.spec import method_of


def metric_column(metric: str) -> str:
    return metric.upper() if len(metric) <= 3 else metric


def batched_speedups(latency: list[dict]) -> dict[tuple[str, str], float]:
    """(backbone, method) -> the method's decode tokens per second at the throughput batch over `full`'s,
    timed beside it in the same job (medians; `full` is its own reference)."""
    out = {}
    for entry in latency:
        found = entry.get("throughput")
        if not found or not found["decode_tokens_per_second"]:
            continue
        rate = found["decode_tokens_per_second"]["median"]
        reference = (rate if method_of(entry).kind == "full"
                     else ((found.get("reference") or {}).get("decode_tokens_per_second") or {}).get("median"))
        if reference:
            out[(entry["backbone"], entry["method"])] = rate / reference
    return out


def throughput_batch(latency: list[dict]) -> int | None:
    """The batch size of the run's throughput measurements (one per profile), None where none was made."""
    sizes = {l["throughput"]["batch_size"] for l in latency if l.get("throughput")}
    if len(sizes) > 1:
        raise ValueError(f"throughput measured at several batch sizes {sorted(sizes)}: rerun the latency rule")
    return next(iter(sizes), None)


def net(cell: dict) -> str:
    """Whether an early-exit row's exit method costs more than it saves on the decode steps (its decode
    savings below 0: surely, or by the point estimate), said in words rather than by a minus sign alone."""
    if method_of(cell).kind != "ee" or "flops.decode_savings" not in cell["intervals"]["estimates"]:
        return ""
    found = estimate_of(cell, "flops.decode_savings")
    return "costs more than it saves" if found["hi"] < 0 else "may cost more than it saves" if found["value"] < 0 else ""


def main_results(cells: list[dict], latency: list[dict] = (), settings: IntervalSettings = IntervalSettings()) -> pd.DataFrame:
    """Per backbone, task and method: task metrics (every task's, empty where they do not
    apply, with lm-eval's stderr in the CSV), consistency, degeneration, decode savings (the generated
    tokens after the first, exit decisions and fills included: where an exit method acts) and total
    savings (the prompt's forward and a stateful classifier's pass over it included), the share of
    generated tokens that could exit at all (all but each sample's first), mean layers executed, latency
    speedup; every estimate with its interval, over n samples."""
    speedup, batched = speedups(list(latency), settings), batched_speedups(list(latency))
    batch = throughput_batch(list(latency))
    predicted = {(l["backbone"], l["method"]): l["flops_per_decode_token"]["predicted_speedup"] for l in latency}
    rows = []
    metric_columns: dict[str, None] = {}  # ordered union over the tasks, companions included
    for cell in sorted(cells, key=lambda c: (c["backbone"], c["task"], method_order(c))):
        m = method_of(cell)
        row = {"backbone": cell["backbone"], "task": cell["task"], "method": cell["method"],
               "threshold": m.threshold if m.kind == "ee" else None}
        for metric in cell["metrics"]:
            columns = estimate_columns(metric_column(metric), estimate_of(cell, f"metrics.{metric}"))
            row.update(columns)
            metric_columns.update(dict.fromkeys(columns))
        for column, quantity in (("consistency", "consistency.output_match"),
                                 ("prefix agreement", "consistency.token_prefix_agreement"),
                                 ("loops", "degeneration.loop_rate")):
            row.update(estimate_columns(column, estimate_of(cell, quantity)))
        row.update(estimate_columns("decode savings", cell["intervals"]["estimates"].get("flops.decode_savings")))
        row["net"] = net(cell)
        row.update(estimate_columns("savings", estimate_of(cell, "flops.total_savings")))
        row.update(estimate_columns("exitable tokens", estimate_of(cell, "tokens.exitable_share")))
        row.update(estimate_columns("mean layers", estimate_of(cell, "layers.mean_executed")))
        row["of L"] = cell["layers"]["num_layers"]
        row.update(estimate_columns("speedup", speedup.get((cell["backbone"], cell["method"]))))
        row["FLOPs speedup"] = predicted.get((cell["backbone"], cell["method"]))
        if batch is not None:
            row[f"speedup batch {batch}"] = batched.get((cell["backbone"], cell["method"]))
        row["n"] = cell["n_samples"]
        rows.append(row)
    df = pd.DataFrame(rows)
    head = ["backbone", "task", "method", "threshold", *metric_columns]
    return df[head + [c for c in df.columns if c not in head]]


def task_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Table 3 split by task, each with only its own metric columns."""
    return {task: part.dropna(axis=1, how="all") for task, part in df.groupby("task", sort=True)}


def tables(inputs: PaperInputs) -> list[Table]:
    main = main_results(inputs.cells, inputs.latency, inputs.settings)
    return [Table("Table 3: main results", "table3_main_results", main,
                  f"Main results: task metrics, consistency with full, savings, layers executed ({inputs.level} intervals)"),
            *[Table(f"Table 3 ({task})", f"table3_{task}", part, f"Main results on {task} ({inputs.level} intervals)")
              for task, part in task_tables(main).items()]]
