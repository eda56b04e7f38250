"""The `paper_tables` rule: tables (Markdown, CSV, LaTeX) and the index page, from cell files only."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import pandas as pd

from dynamax_bench.reporting import claims
from dynamax_bench.reporting.claims import Outcome
from dynamax_bench.reporting.statistics import IntervalSettings, estimate_of, paired_difference
from dynamax_bench.reporting.figures import exit_histograms, latency_vs_threshold, quality_vs_savings
from dynamax_bench.reporting.speculation import payoff_table, speculation_latency_table, speculation_table
from dynamax_bench.spec import method_of
from dynamax_bench.files import atomic_path, dumps, read_json
from dynamax_bench.backbones.meta import read_backbone_meta
from dynamax_bench.provenance import machine_description, run_record


LO, HI, STDERR = " lo", " hi", " stderr"  # companion columns of an estimate in a table's frame
DIFF = " diff"  # a paired difference: shown with its sign


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
    """full first, then pruning by depth, the oracle, self-speculative decoding, then early-exit methods by name."""
    method = method_of(cell)
    rank = {"full": 0, "prune": 1, "oracle": 2, "spec": 3, "ee": 4}[method.kind]
    return (rank, method.prune, method.draft_layer or 0, method.draft_tokens or 0,
            method.name if method.kind == "ee" else "")


def metric_column(metric: str) -> str:
    return metric.upper() if len(metric) <= 3 else metric


def speedups(latency: list[dict]) -> dict[tuple[str, str], float]:
    """(backbone, method) -> median time per decode step of `full` / that of the method (same run).
    Decode steps only: the prompt's forward runs every layer under every method."""
    decode = {(l["backbone"], l["method"]): l["seconds_per_decode_token"]["median"]
              for l in latency if l["seconds_per_decode_token"] is not None}
    return {(backbone, method): decode[(backbone, "full")] / seconds
            for (backbone, method), seconds in decode.items() if (backbone, "full") in decode}


def batched_speedups(latency: list[dict]) -> dict[tuple[str, str], float]:
    """(backbone, method) -> the method's decode tokens per second at the throughput batch over
    `full`'s (medians, same run and batch size)."""
    rate = {(l["backbone"], l["method"]): (l["throughput"]["batch_size"], l["throughput"]["decode_tokens_per_second"]["median"])
            for l in latency if l.get("throughput") and l["throughput"]["decode_tokens_per_second"]}
    return {(backbone, method): tokens / rate[(backbone, "full")][1]
            for (backbone, method), (batch, tokens) in rate.items()
            if (backbone, "full") in rate and rate[(backbone, "full")][0] == batch}


def throughput_batch(latency: list[dict]) -> int | None:
    """The batch size of the run's throughput measurements (one per profile), None where none was made."""
    sizes = {l["throughput"]["batch_size"] for l in latency if l.get("throughput")}
    if len(sizes) > 1:
        raise ValueError(f"throughput measured at several batch sizes {sorted(sizes)}: rerun the latency rule")
    return next(iter(sizes), None)


def main_results(cells: list[dict], latency: list[dict] = ()) -> pd.DataFrame:
    """Table 3: per backbone, task and method: task metrics (every task's, empty where they do not
    apply, with lm-eval's stderr in the CSV), consistency, degeneration, total FLOPs savings (prompt
    and classifier prompt pass included) and decode-only savings, the share of generated tokens that
    could exit at all (all but each sample's first), mean layers executed, latency speedup; every
    estimate with its interval, over n samples."""
    speedup, batched = speedups(list(latency)), batched_speedups(list(latency))
    batch = throughput_batch(list(latency))
    predicted = {(l["backbone"], l["method"]): l["flops_per_decode_token"]["predicted_speedup"] for l in latency}
    rows = []
    metric_columns: dict[str, None] = {}  # ordered union over the tasks, companions included
    for cell in sorted(cells, key=lambda c: (c["backbone"], c["task"], method_order(c))):
        row = {"backbone": cell["backbone"], "task": cell["task"], "method": cell["method"]}
        for metric in cell["metrics"]:
            columns = estimate_columns(metric_column(metric), estimate_of(cell, f"metrics.{metric}"))
            row.update(columns)
            metric_columns.update(dict.fromkeys(columns))
        for column, quantity in (("consistency", "consistency.output_match"),
                                 ("prefix agreement", "consistency.token_prefix_agreement"),
                                 ("loops", "degeneration.loop_rate"),
                                 ("savings", "flops.total_savings")):
            row.update(estimate_columns(column, estimate_of(cell, quantity)))
        row["decode savings"] = cell["flops"]["decode_savings"]
        row.update(estimate_columns("exitable tokens", estimate_of(cell, "tokens.exitable_share")))
        row.update(estimate_columns("mean layers", estimate_of(cell, "layers.mean_executed")))
        row["of L"] = cell["layers"]["num_layers"]
        row["speedup"] = speedup.get((cell["backbone"], cell["method"]))
        row["FLOPs speedup"] = predicted.get((cell["backbone"], cell["method"]))
        if batch is not None:
            row[f"speedup batch {batch}"] = batched.get((cell["backbone"], cell["method"]))
        row["n"] = cell["n_samples"]
        rows.append(row)
    df = pd.DataFrame(rows)
    head = ["backbone", "task", "method", *metric_columns]
    return df[head + [c for c in df.columns if c not in head]]


def task_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Table 3 split by task, each with only its own metric columns."""
    return {task: part.dropna(axis=1, how="all") for task, part in df.groupby("task", sort=True)}


def setup_table(flops: list[dict]) -> pd.DataFrame:
    """Table 1: backbones (layers, parameters, exits, FLOPs per token of a layer and the head) and
    exit methods (parameters, FLOPs per decision per exit), on each backbone's width."""
    rows = []
    for table in sorted(flops, key=lambda t: t["backbone"]):
        blocks = table["blocks"]
        rows.append({"backbone": table["backbone"], "block": f"decoder layer x {table['num_layers']}",
                     "parameters": table["parameters"]["layer"], "FLOPs per token": blocks["layer_decode"]["flops"],
                     "exit positions": " ".join(map(str, table["exit_positions"])),
                     "backbone parameters": table["parameters"]["total"]})
        rows.append({"backbone": table["backbone"], "block": "final norm + LM head",
                     "parameters": table["parameters"]["head"], "FLOPs per token": blocks["head"]["flops"]})
        if "fill_partial" in blocks:
            rows.append({"backbone": table["backbone"], "block": "partial-forward fill, one skipped layer",
                         "parameters": 0, "FLOPs per token": blocks["fill_partial"]["flops"]})
        for kind, step in sorted(table["exit_methods"].items()):
            rows.append({"backbone": table["backbone"], "block": f"exit method {kind} (one exit)",
                         "parameters": step["parameters"], "FLOPs per token": step["flops"]})
    df = pd.DataFrame(rows)
    # only the layer row carries the backbone's total: keep it an integer count beside the blanks
    return df.astype({"backbone parameters": "Int64"}) if rows else df


def distillation_table(classifiers: list[dict]) -> pd.DataFrame:
    """Table 2: per backbone, kind, top-k and exit, the label statistics of the trained classifiers on
    the test split (documents and topics that neither training nor the epoch or k choice saw), and
    their simulated early exit there. Each kind appears at the k its backbone chose; the probe kind of
    the k choice also at every other candidate, from the same oracle pass."""
    rows = []

    def add(meta: dict, kind: str, k: int, result: dict) -> None:
        selection = meta["top_k_selection"]
        verdict = selection["candidates"][str(k)]
        choice = "chosen" if k == selection["chosen"] else "admissible" if verdict["admissible"] else "rejected"
        for layer in meta["exit_layers"]:
            ex = result["exits"][str(layer)]
            row = {"backbone": meta["backbone"], "kind": kind, "top-k": k, "k choice": choice, "exit layer": layer,
                   "positive rate": ex["positive_rate"], "accuracy": ex["accuracy"], "precision": ex["precision"],
                   "recall": ex["recall"], "F1": ex["f1"], "test tokens": ex["tokens"]}
            for t, sim in result["early_exit"].items():
                row[f"sim. consistency t={t}"] = sim["consistency"]
                row[f"sim. savings t={t}"] = sim["savings"]
            rows.append(row)

    trained = {(m["backbone"], m["kind"], m["training"]["top_k"]) for m in classifiers}
    for meta in sorted(classifiers, key=lambda m: (m["backbone"], m["kind"])):
        add(meta, meta["kind"], meta["training"]["top_k"], meta["test"])
    for meta in {m["backbone"]: m for m in classifiers}.values():
        selection = meta["top_k_selection"]
        for k, result in selection["sweep"].items():
            if (meta["backbone"], selection["probe"], int(k)) not in trained:
                add(meta, selection["probe"], int(k), result["test"])
    columns = ["backbone", "kind", "top-k", "exit layer"]
    return pd.DataFrame(rows).sort_values(columns, kind="stable").reset_index(drop=True) if rows else pd.DataFrame(rows)


def top_k_selection_table(classifiers: list[dict]) -> pd.DataFrame:
    """Table 2b: why each backbone's k: per candidate and threshold, the probe's simulated early-exit
    consistency and savings on the validation split against the floor (lower end of the smallest
    candidate's 95% interval); the largest k at or above the floor at every threshold is chosen."""
    rows = []
    for meta in sorted({m["backbone"]: m for m in classifiers}.values(), key=lambda m: m["backbone"]):
        selection = meta["top_k_selection"]
        for k, verdict in sorted(selection["candidates"].items(), key=lambda item: int(item[0])):
            for t, check in verdict["thresholds"].items():
                interval = selection["sweep"][k]["validation"]["early_exit"][t]["interval"]
                rows.append({"backbone": meta["backbone"], "probe": selection["probe"], "top-k": int(k), "threshold": float(t),
                             "consistency": check["consistency"], "95% low": interval[0], "95% high": interval[1],
                             "floor": check["floor"], "savings": check["savings"],
                             "admissible": "yes" if verdict["admissible"] else "no",
                             "chosen": "yes" if int(k) == selection["chosen"] else ""})
    return pd.DataFrame(rows)


def exit_weight_ablation_table(ablations: list[dict]) -> pd.DataFrame:
    """Uniform vs decaying exit-loss weights, with per-exit and with shared classifier parameters
    (rule exit_weight_ablation): epoch kept, test F1, simulated early exit on the test split, and the
    largest parameter difference between the two weightings after the same steps."""
    rows = []
    for ablation in sorted(ablations, key=lambda a: a["backbone"]):
        for r in ablation["rows"]:
            row = {"backbone": ablation["backbone"], "kind": ablation["probe"], "top-k": ablation["top_k"],
                   "parameters": r["parameters"], "exit weights": r["exit_weights"],
                   "weights": " ".join(f"{w:.2f}" for w in r["exit_weight_values"]),
                   "epoch kept": r["selected_epoch"], "mean test F1": r["test_mean_f1"],
                   "max parameter difference, uniform vs decaying": ablation["parameter_difference"][r["parameters"]]}
            for t, sim in r["test_early_exit"].items():
                row[f"sim. consistency t={t}"] = sim["consistency"]
                row[f"sim. savings t={t}"] = sim["savings"]
            rows.append(row)
    return pd.DataFrame(rows)


def agreement_table(cells: list[dict]) -> pd.DataFrame:
    """Table 7: each cell's batched decoding against batch 1 (the cell's `agreement`, written by
    generation.decoder.Decoder): rows, rows that met a near tie (re-decoded at batch 1, whose output
    the cell keeps), rows and tokens the batch had changed, and changes no near tie explains (a run
    with one stops, so 0 here). A cell decoded on the reference path has no agreement to report."""
    rows = []
    for cell in sorted(cells, key=lambda c: (c["backbone"], c["task"], method_order(c))):
        spec, found = cell.get("spec", {}), cell.get("agreement")
        row = {"backbone": cell["backbone"], "task": cell["task"], "method": cell["method"],
               "batch size": spec.get("batch_size"), "prefix cache": "yes" if spec.get("prefix_cache") else "no"}
        if found is None:
            row["path"] = "reference (batch 1)"
        else:  # a spec-* cell: batch 1, its near-tie rows checked against the full model's plain decode
            row.update({"path": "self-speculative (batch 1)" if method_of(cell).kind == "spec" else "batched", "rows": found["rows"], "rows with near ties": found["rows_with_near_ties"],
                        "rows re-decoded": found["rows_redecoded"], "rows changed by the batch": found["rows_differing"],
                        "tokens changed by the batch": found["tokens_differing"], "unexplained": found["unexplained"]})
        rows.append(row)
    return pd.DataFrame(rows)


def speculation_tables(cells: list[dict], classifiers: list[dict], latency: list[dict], flops: list[dict],
                       out_dir: Path, level: str) -> dict[str, list[str]]:
    """Tables 8, 8b and 8c (reporting/speculation.py), for a run with self-speculative cells."""
    return {
        "Table 8: self-speculative decoding": write_table(
            speculation_table(cells, latency, flops), out_dir, "table8_speculative",
            f"Self-speculative decoding (lossless): drafts accepted by the full model ({level} intervals over "
            "samples), tokens per verification pass against the i.i.d. acceptance model, consistency with full (1 by "
            "construction), decode FLOPs against full, and the speedup predicted from the per-draft acceptance with "
            "the blocks' measured seconds (batch 1, this machine) or their FLOPs"),
        "Table 8b: self-speculative speedup, predicted vs measured": write_table(
            speculation_latency_table(latency), out_dir, "table8b_speculative_latency",
            "Self-speculative decoding on the latency rule's timed prompts (batch 1): per-draft acceptance there, the "
            "speedup the blocks' measured seconds predict from it, the speedup measured (full's median time per "
            "decode step over the method's) and the one the FLOPs give"),
        "Table 8c: which (E, K) would pay": write_table(
            payoff_table(classifiers, latency, flops), out_dir, "table8c_speculative_payoff",
            "Self-speculative decoding at every exit E and K drafts: speedup predicted from the exit's top-1 agreement "
            "with the final layer on the held-out corpus (the oracle's labels at k = 1), with the blocks' measured "
            "seconds (batch 1, where a spec-* latency file holds them) and with their FLOPs; above 1 it pays"),
    }


def primary_metric(cell: dict) -> str:
    """The task metric a comparison table shows: the first one the task declares."""
    return next(iter(cell["metrics"]))


def pruning_comparison(cells: list[dict], settings: IntervalSettings) -> pd.DataFrame:
    """Table 4: each static pruning level against the EE cell of each kind whose total savings are
    closest to it (ties: the more consistent), per backbone and task, with the paired differences
    EE - pruning of consistency and of the task's first metric over the same samples."""
    rows = []
    for (backbone, task), group_cells in sorted(claims.group(cells).items()):
        for prune in sorted((c for c in group_cells if method_of(c).kind == "prune"),
                            key=lambda c: method_of(c).prune):
            if method_of(prune).prune == 0:
                continue
            target = claims.total_savings(prune)
            metric = primary_metric(prune)
            row = {"backbone": backbone, "task": task, "pruning": prune["method"],
                   **estimate_columns("savings", estimate_of(prune, "flops.total_savings")),
                   **estimate_columns(f"pruning {metric}", estimate_of(prune, f"metrics.{metric}")),
                   **estimate_columns("pruning consistency", estimate_of(prune, "consistency.output_match"))}
            for kind in sorted({method_of(c).exit_kind for c in claims.ee_cells(group_cells)}):
                best = min(claims.ee_cells(group_cells, kind),
                           key=lambda c: (abs(claims.total_savings(c) - target), -c["consistency"]["output_match"]))
                row[f"{kind} method"] = best["method"]
                row[f"{kind} savings"] = claims.total_savings(best)
                row[f"{kind} consistency"] = best["consistency"]["output_match"]
                row.update(difference_columns(f"{kind} consistency{DIFF}", best, prune, "consistency.output_match",
                                              settings))
                row.update(difference_columns(f"{kind} {metric}{DIFF}", best, prune, f"metrics.{metric}", settings))
            row["n"] = prune["n_samples"]
            rows.append(row)
    return pd.DataFrame(rows)


REFERENCE_POLICY = "partial"  # the skipped layers compute their own states: the exact-cache reference


def policy_ablation(cells: list[dict], settings: IntervalSettings) -> pd.DataFrame:
    """Table 5: the same kind and threshold under each state policy of the backbone; every other
    policy also as its paired difference from `partial` over the same samples (e.g. copy - partial)."""
    rows = []
    reference = {(c["backbone"], c["task"], method_of(c).exit_kind, method_of(c).threshold): c
                 for c in claims.ee_cells(cells, policy=REFERENCE_POLICY)}
    for cell in claims.ee_cells(cells):
        m = method_of(cell)
        metric = primary_metric(cell)
        row = {"backbone": cell["backbone"], "task": cell["task"], "kind": m.exit_kind, "threshold": m.threshold,
               "policy": m.policy,
               **estimate_columns(metric, estimate_of(cell, f"metrics.{metric}")),
               **estimate_columns("consistency", estimate_of(cell, "consistency.output_match")),
               **estimate_columns("savings", estimate_of(cell, "flops.total_savings")),
               **estimate_columns("mean layers", estimate_of(cell, "layers.mean_executed"))}
        partial = reference.get((cell["backbone"], cell["task"], m.exit_kind, m.threshold))
        if partial is not None and partial is not cell:
            for column, quantity in ((f"{metric}{DIFF}", f"metrics.{metric}"),
                                     (f"consistency{DIFF}", "consistency.output_match"),
                                     (f"savings{DIFF}", "flops.total_savings")):
                row.update(difference_columns(column, cell, partial, quantity, settings))
        row["n"] = cell["n_samples"]
        rows.append(row)
    if not rows:
        return pd.DataFrame(rows)
    df = pd.DataFrame(rows).sort_values(["backbone", "task", "kind", "threshold", "policy"], kind="stable")
    return df[[c for c in df.columns if c != "n"] + ["n"]]


def claims_tables(cells: list[dict], evidence: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 6: the claims scorecard, one row per claim, and every comparison behind it
    (dynamax_bench/reporting/claims.py)."""
    rows, details = claims.claims_scorecard(cells, evidence)
    names = {"a": "A", "a_value": "A value", "b": "B", "b_value": "B value", "difference": f"A - B{DIFF}",
             "lo": f"A - B{DIFF}{LO}", "hi": f"A - B{DIFF}{HI}"}
    comparisons = pd.DataFrame([asdict(o) for o in details], columns=[f.name for f in fields(Outcome)])
    return pd.DataFrame(rows), comparisons.astype({"n": "Int64"}).rename(columns=names)


def backbone_line(name: str, label: str, meta: dict | None) -> str:
    """One backbone on the index page; a backbone the pipeline trained also shows how good it got,
    since every one of its rows reads differently at perplexity 5 than at 500."""
    line = f"- `{name}`: {label}"
    training = (meta or {}).get("training")
    if training:
        heldout = training["heldout"]
        line += (
            f"; held-out perplexity {heldout['student_perplexity']:.1f} on {training['heldout_tokens']} tokens"
            f" (teacher {heldout['teacher_perplexity']:.2f}, random initialisation {heldout['random_init_perplexity']:.0f})"
            f" after {training['steps_done']} steps"
        )
        if training["stopped_by"] != "steps":
            line += f", stopped by the {training['stopped_by']}"
    return line


def evidence_lines(evidence: dict) -> list[str]:
    """How the intervals and verdicts were made, for the index page."""
    return [
        "## Uncertainty",
        "",
        f"Every estimate is shown as `value [lo, hi]`: a {evidence['confidence']:.0%} percentile bootstrap",
        f"interval over the samples ({evidence['resamples']} resamples, seed {evidence['seed']}; CSV files carry",
        "lo and hi as columns, and lm-eval's standard error of each task metric); n is the sample count.",
        "Differences (`diff` columns of Tables 4 and 5; Table 6) are paired: both cells are resampled",
        "with the same sample indices. A claim's comparison is inconclusive when its interval includes the claim's margin,",
        f"when n < {evidence['min_samples']}, or when both sides tie; see table6_claims_comparisons for each one.",
        "",
    ]


def index_page(run: dict, cells: list[dict], tables: dict[str, list[str]], backbones: dict[str, dict],
               evidence: dict) -> str:
    """The index: provenance, backbones (with `dynamax_backbone.json` metadata where given), links,
    how to read the numbers. run: `provenance.run_description` of the profile; evidence: its
    `evidence` section."""
    prov = run_record(run)
    labels = {c["backbone"]: c["backbone_label"] for c in cells}
    lines = [
        "# dynamax-bench: paper tables",
        "",
        f"Generated by `snakemake --cores all paper_tables/` on profile **{run['profile']}**.",
        "",
        f"- config hash: `{prov['config_hash']}`",
        f"- git commit: `{prov['git_commit']}`",
        f"- hardware: {machine_description()}; device `{run['device']}`, "
        f"dtype `{run['dtype']}`, {run['threads']} torch threads per job",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in prov["versions"].items()),
        "",
        "## Backbones",
        "",
        *[backbone_line(name, label, backbones.get(name)) for name, label in sorted(labels.items())],
        "",
        "## Tables and figures",
        "",
        *[f"- {caption}: " + ", ".join(f"[{n}]({n})" for n in names) for caption, names in tables.items()],
        "",
        "Consistency is the share of outputs identical to the `full` method's; prefix agreement is the",
        "share of the full model's tokens reproduced before the first divergence; loops is the share of",
        "outputs in which one token 4-gram occurs at least 3 times; mean layers counts the decoder layers",
        "executed per generated token (the first token comes from the prompt's full forward pass).",
        "Task metrics follow lm-eval: EM/F1 in [0, 1] (TriviaQA, CoQA); TruthfulQA BLEU and ROUGE on a",
        "0-100 scale, each as max (best correct reference), acc (best correct beats best incorrect)",
        "and diff (best correct minus best incorrect).",
        "Savings are 1 - FLOPs executed / FLOPs of the full model for the same tokens, over everything the",
        "method ran for each sample alone (batch 1): the prompt's forward, a stateful classifier's pass over",
        "the prompt at every exit, every exit decision, the fills of skipped layers and the heads; decode",
        "savings count the decode steps alone (claims use savings).",
        "Speedup is the median wall time per decode step of `full` over the method's, on the latency",
        "rule's prompts in the same run (the prompt's forward runs every layer under every method, so",
        "it is timed apart, as time to first token, in results/<profile>/latency/); FLOPs speedup is",
        "what the FLOPs of those same timed decode steps predict (full's FLOPs over the executed ones).",
        "Their ratio is the share of the saving that the engine turns into time. Speedup batch B (where",
        "the profile sets latency.throughput_batch) is the method's decode tokens per second over `full`'s",
        "with the latency task's first B prompts as one batch: rows that stop leave the batch, rows that",
        "exit early are masked at the layers they skip, so it says what early exit gives a server.",
        "Savings are total (the prompt's forward and a stateful classifier's pass over the prompt",
        "included) unless marked decode; exitable tokens is the share of generated tokens that could",
        "exit at all (every token but each sample's first, which the prompt's full forward produces).",
        "",
        *evidence_lines(evidence),
    ]
    return "\n".join(lines)


def build_paper_tables(
    run: dict,
    cell_paths: list[str | Path],
    out_dir: str | Path,
    evidence: dict,
    classifier_paths: list[str | Path] = (),
    latency_paths: list[str | Path] = (),
    flops_paths: list[str | Path] = (),
    backbone_dirs: list[str | Path] = (),
) -> None:
    """Write every table, figure and the index into `out_dir` (Snakemake's directory output).
    evidence: the profile's `evidence` section (paired intervals and the claims' minimum n)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = IntervalSettings.from_dict(evidence)
    cells = [read_json(p) for p in cell_paths]
    classifiers = [read_json(p) for p in classifier_paths]
    latency = [read_json(p) for p in latency_paths]
    flops = [read_json(p) for p in flops_paths]
    backbones = {meta["name"]: meta for meta in map(read_backbone_meta, backbone_dirs)}
    main = main_results(cells, latency)
    unit = flops[0]["unit"] if flops else "fvcore flops"
    level = f"{settings.confidence:.0%}"
    tables = {
        "Table 1: setup": write_table(
            setup_table(flops), out_dir, "table1_setup",
            f"Setup: parameters and FLOPs per token of each block (decode step; {unit})"),
        "Table 2: distillation": write_table(
            distillation_table(classifiers), out_dir, "table2_distillation",
            "Distillation on the test split (documents and topics never trained on nor used to pick epochs or k): "
            "label statistics per backbone, classifier kind, top-k and exit (confidence >= 0.5), and simulated early "
            "exit (layer savings, no classifier cost); each kind at its backbone's chosen k (Table 2b), the probe "
            "kind at every candidate"),
        "Table 2b: top-k choice": write_table(
            top_k_selection_table(classifiers), out_dir, "table2b_top_k_choice",
            "Top-k choice on the validation split: simulated early-exit consistency of the probe kind per candidate "
            "k and threshold; chosen: the largest k at or above the floor (lower end of the 95% document-bootstrap "
            "interval of the smallest k) at every threshold"),
        "Table 3: main results": write_table(
            main, out_dir, "table3_main_results",
            f"Main results: task metrics, consistency with full, savings, layers executed ({level} intervals)"),
    }
    for task, part in task_tables(main).items():
        tables[f"Table 3 ({task})"] = write_table(part, out_dir, f"table3_{task}",
                                                  f"Main results on {task} ({level} intervals)")
    tables["Table 4: early exit vs static pruning"] = write_table(
        pruning_comparison(cells, settings), out_dir, "table4_ee_vs_pruning",
        f"Early exit against static layer pruning at matched total savings (closest EE cell per kind); "
        f"diff = EE - pruning over the same samples ({level} intervals)")
    tables["Table 5: state-policy ablation"] = write_table(
        policy_ablation(cells, settings), out_dir, "table5_policy_ablation",
        f"State policies: copy vs partial (Transformer), skip vs partial (Mamba-2); "
        f"diff = policy - partial over the same samples ({level} intervals)")
    scorecard, comparisons = claims_tables(cells, evidence)
    tables["Table 6: claims scorecard"] = write_table(
        scorecard, out_dir, "table6_claims",
        f"Claims of the paper, checked on this run (paired {level} intervals, Bonferroni over each claim's "
        f"comparisons; fewer than {evidence['min_samples']} samples reads inconclusive)")
    tables["Table 6 (every comparison)"] = write_table(
        comparisons, out_dir, "table6_claims_comparisons",
        "Every comparison behind the claims scorecard: sides, paired difference D = A - B, its interval, n")
    tables["Table 7: batched decoding vs batch 1"] = write_table(
        agreement_table(cells), out_dir, "table7_batch_agreement",
        "Batched decoding against batch 1, per cell: rows that met a near tie were re-decoded at batch 1 and "
        "the cell keeps that output; changed rows and tokens are what the batch had changed there")
    if any(method_of(cell).kind == "spec" for cell in cells):
        tables.update(speculation_tables(cells, classifiers, latency, flops, out_dir, level))
    tables["Figure 1: quality vs savings"] = quality_vs_savings(cells, out_dir, settings.confidence)
    tables["Figure 2: exit-layer histograms"] = exit_histograms(cells, out_dir)
    tables["Figure 3: latency vs threshold"] = latency_vs_threshold(latency, out_dir)
    with atomic_path(out_dir / "index.md") as tmp:
        tmp.write_text(index_page(run, cells, tables, backbones, evidence), encoding="utf-8")
    with atomic_path(out_dir / "provenance.json") as tmp:
        tmp.write_text(dumps(run_record(run)), encoding="utf-8")
