"""Figures of paper_tables/ (PNG and PDF), drawn from cell files only."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dynamax_bench.files import atomic_path  # noqa: E402
from dynamax_bench.reporting.statistics import estimate_of  # noqa: E402
from dynamax_bench.spec import method_of  # noqa: E402


def save_figure(fig: plt.Figure, out_dir: Path, stem: str) -> list[str]:
    """Write PNG and PDF atomically (fixed metadata so reruns give the same bytes where possible)."""
    names = []
    for ext, metadata in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "Producer": None})):
        name = f"{stem}.{ext}"
        with atomic_path(out_dir / name) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight", metadata=metadata)
        names.append(name)
    plt.close(fig)
    return names


def exit_histograms(cells: list[dict], out_dir: Path) -> list[str]:
    """Figure 2: share of generated tokens per exit layer, per backbone (rows) and classifier kind
    (columns); one bar series per state policy and threshold, the `full` layer count on the right."""
    by_panel: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for cell in cells:
        method = method_of(cell)
        if method.kind == "ee":
            by_panel[(cell["backbone"], method.exit_kind)].append(cell)
    backbones = sorted({b for b, _ in by_panel})
    kinds = sorted({k for _, k in by_panel})
    if not by_panel:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, "no early-exit cells in this run", ha="center", va="center")
        ax.axis("off")
        return save_figure(fig, out_dir, "figure2_exit_histograms")
    fig, axes = plt.subplots(len(backbones), len(kinds), figsize=(3.6 * len(kinds), 2.8 * len(backbones)),
                             squeeze=False)
    for r, backbone in enumerate(backbones):
        for c, kind in enumerate(kinds):
            ax = axes[r][c]
            series = defaultdict(lambda: defaultdict(int))
            for cell in by_panel.get((backbone, kind), []):
                method = method_of(cell)
                label = f"{method.policy} t={method.threshold:g}"
                for layer, count in cell["layers"]["histogram"].items():
                    series[label][int(layer)] += count
            layers = sorted({layer for counts in series.values() for layer in counts})
            width = 0.8 / max(len(series), 1)
            for i, (label, counts) in enumerate(sorted(series.items())):
                total = sum(counts.values())
                xs = [j + i * width for j in range(len(layers))]
                ax.bar(xs, [counts.get(layer, 0) / total for layer in layers], width=width, label=label)
            ax.set_xticks([j + 0.4 - width / 2 for j in range(len(layers))], [str(x) for x in layers])
            ax.set_title(f"{backbone}: {kind}", fontsize=9)
            ax.set_xlabel("layers executed")
            if c == 0:
                ax.set_ylabel("share of tokens")
            ax.legend(fontsize=6)
    fig.suptitle("Exit-layer histograms per classifier kind (the first token of each sample runs every layer)",
                 fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out_dir, "figure2_exit_histograms")


def error(estimates: list[dict]) -> list[list[float]]:
    """matplotlib's asymmetric error bars (below, above) of estimates (value, lo, hi)."""
    return [[max(e["value"] - e["lo"], 0.0) for e in estimates], [max(e["hi"] - e["value"], 0.0) for e in estimates]]


def quality_vs_savings(cells: list[dict], out_dir: Path, confidence: float) -> list[str]:
    """Figure 1: consistency with full (top row) and the task's first metric (bottom row) against
    total FLOPs savings, one column per backbone and task: each exit kind and policy across
    thresholds, static pruning levels, the oracle point, each self-speculative configuration (lossless:
    consistency 1, its savings negative, since it computes rejected drafts); every point with its interval
    on both axes."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for cell in cells:
        groups[(cell["backbone"], cell["task"])].append(cell)
    keys = sorted(groups)
    fig, axes = plt.subplots(2, max(len(keys), 1), figsize=(4.2 * max(len(keys), 1), 6.4), squeeze=False)
    for col, key in enumerate(keys):
        group_cells = groups[key]
        metric = next(iter(group_cells[0]["metrics"]))
        for row, (label, quantity) in enumerate((("consistency with full", "consistency.output_match"),
                                                 (metric, f"metrics.{metric}"))):
            ax = axes[row][col]
            series: dict[str, list[tuple[float, dict, dict]]] = defaultdict(list)
            for cell in group_cells:
                m = method_of(cell)
                point = (estimate_of(cell, "flops.total_savings"), estimate_of(cell, quantity))
                if m.kind == "ee":
                    series[f"{m.exit_kind}-{m.policy}"].append((m.threshold, *point))
                elif m.kind == "prune":
                    series["static pruning"].append((-m.prune, *point))
                elif m.kind in ("oracle", "full", "spec"):  # spec: lossless, at consistency 1 with its (negative) savings
                    style = {"oracle": {"marker": "*", "markersize": 11, "color": "black"},
                             "full": {"marker": "s", "color": "grey"},
                             "spec": {"marker": "D", "markersize": 5, "color": "tab:purple"}}[m.kind]
                    ax.errorbar(point[0]["value"], point[1]["value"], xerr=error([point[0]]), yerr=error([point[1]]),
                                capsize=2, label=m.name if m.kind == "spec" else m.kind, zorder=3, **style)
            for name, points in sorted(series.items()):
                points.sort(key=lambda p: p[0])
                xs, ys = [p[1] for p in points], [p[2] for p in points]
                style = {"color": "black", "linestyle": "--"} if name == "static pruning" else {}
                ax.errorbar([x["value"] for x in xs], [y["value"] for y in ys], xerr=error(xs), yerr=error(ys),
                            marker="o", markersize=3, capsize=2, elinewidth=0.7, label=name, **style)
            ax.set_xlabel("total FLOPs savings")
            ax.set_ylabel(label)
            ax.set_title(f"{key[0]} / {key[1]}", fontsize=9)
            ax.grid(alpha=0.3)
            if col == 0 and row == 0:
                ax.legend(fontsize=6)
    fig.suptitle(f"Quality against savings ({confidence:.0%} bootstrap intervals on both axes)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out_dir, "figure1_quality_vs_savings")


def latency_vs_threshold(latency: list[dict], out_dir: Path) -> list[str]:
    """Figure 3: median time per decode step (with its 25-75% range) against the threshold, per
    backbone, one line per exit method and policy; `full` as a horizontal line. The prompt's
    forward is left out: it runs every layer under every method."""
    backbones = sorted({l["backbone"] for l in latency})
    fig, axes = plt.subplots(1, max(len(backbones), 1), figsize=(4.5 * max(len(backbones), 1), 3.4), squeeze=False)
    for ax, backbone in zip(axes[0], backbones):
        series: dict[str, list[tuple[float, dict]]] = defaultdict(list)
        for entry in latency:
            if entry["backbone"] != backbone:
                continue
            m = method_of(entry)
            if entry["seconds_per_decode_token"] is None:
                continue
            per_token = {k: 1000 * v for k, v in entry["seconds_per_decode_token"].items()}
            if m.kind == "full":
                ax.axhline(per_token["median"], color="grey", linestyle="--", label="full")
            elif m.kind == "ee":
                series[f"{m.exit_kind}-{m.policy}"].append((m.threshold, per_token))
        for name, points in sorted(series.items()):
            points.sort(key=lambda p: p[0])
            xs = [p[0] for p in points]
            ax.errorbar(xs, [p[1]["median"] for p in points],
                        yerr=[[p[1]["median"] - p[1]["p25"] for p in points],
                              [p[1]["p75"] - p[1]["median"] for p in points]],
                        marker="o", markersize=3, capsize=2, label=name)
        ax.set_xlabel("exit threshold")
        ax.set_ylabel("ms per decode step (median)")
        ax.set_title(backbone, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return save_figure(fig, out_dir, "figure3_latency_vs_threshold")
