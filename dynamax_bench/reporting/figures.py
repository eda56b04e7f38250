"""Figures of paper_tables/ (PNG and PDF), drawn from cell files only."""

from __future__ import annotations

import textwrap
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dynamax_bench.files import atomic_path  # noqa: E402
from dynamax_bench.reporting.speedups import speedups  # noqa: E402
from dynamax_bench.reporting.statistics import IntervalSettings  # noqa: E402
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
                label = f"{method.policy} {method.name.rsplit('-', 1)[1]}"  # t0.9, c0.95 or p6
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


SAVINGS = "flops.decode_savings"
SPEC_COLOR = "tab:purple"
# The trade-off panels' left edge: a method decoding at 1.5x full's cost. Points further left (a lossless
# method's rejected drafts, a classifier that costs more than it saves) would squeeze every curve into a
# sliver on the right; they are drawn on the edge as a triangle with their value.
LEFT_EDGE = -0.5


def _point(cell: dict, quantity: str) -> tuple[dict, dict] | None:
    found = cell["intervals"]["estimates"]
    if SAVINGS not in found or quantity not in found:
        return None
    return found[SAVINGS], found[quantity]


def _curve(ax: plt.Axes, points: list[tuple[dict, dict]], color: str, label: str) -> None:
    """One method's trade-off: its cells by decode savings, each with its interval on both axes, and the
    band of the quality intervals between them."""
    points = sorted(points, key=lambda p: p[0]["value"])
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    ax.errorbar([x["value"] for x in xs], [y["value"] for y in ys], xerr=error(xs), yerr=error(ys), color=color,
                marker="o", markersize=3.5, capsize=2, elinewidth=0.7, linewidth=1.2, label=label)
    if len(points) > 1:
        ax.fill_between([x["value"] for x in xs], [y["lo"] for y in ys], [y["hi"] for y in ys], color=color, alpha=0.12,
                        linewidth=0)


def _mark_offscale(ax: plt.Axes, drawn: list[tuple[float, float, object, str]]) -> None:
    """Points left of LEFT_EDGE, drawn on the edge with their decode savings (and name where they have one)."""
    offscale = [d for d in drawn if d[0] < LEFT_EDGE]
    if not offscale:
        return
    ax.set_xlim(LEFT_EDGE, ax.get_xlim()[1])
    (left, right), (low, high) = ax.get_xlim(), ax.get_ylim()
    step, placed = 0.05 * (high - low), high + 1.0  # a label sits at its point's height or below the one above
    for x, y, color, name in sorted(offscale, key=lambda d: -d[1]):
        placed = min(y, placed - step)
        ax.plot(LEFT_EDGE, y, marker="<", markersize=6, color=color, linestyle="none", clip_on=False, zorder=5)
        ax.annotate(f"{name} {x:+.2f}".strip(), (LEFT_EDGE, y), xytext=(LEFT_EDGE + 0.02 * (right - left), placed),
                    textcoords="data", fontsize=6, color=color, va="center")


def tradeoff_curves(cells: list[dict], out_dir: Path, confidence: float, competence: dict | None = None) -> list[str]:
    """Figure 1, one per backbone: consistency with full (top row) and the task's first metric (bottom row)
    against decode savings (the generated tokens after the first, exit decisions and fills included), one
    column per task. Each exit kind is a curve through its calibrated cells (one per consistency target and
    pruning level, the first policy), its fixed thresholds as open markers; static pruning levels as black
    squares; the oracle (every token at the first exit that agrees with full: the ceiling at consistency 1)
    as a dotted line; each self-speculative configuration as a purple diamond (lossless: consistency 1, its
    decode savings negative, since it computes rejected drafts); every point with its bootstrap interval on
    both axes. A point with decode savings below LEFT_EDGE sits on the left edge as a triangle labelled with
    its value. `competence`: (backbone, task) -> why the full model is not competent there, written on its
    panels."""
    names = []
    competence = competence or {}
    for backbone in sorted({c["backbone"] for c in cells}):
        mine = [c for c in cells if c["backbone"] == backbone]
        tasks = sorted({c["task"] for c in mine})
        kinds = sorted({method_of(c).exit_kind for c in mine if method_of(c).kind == "ee"})
        colors = {kind: plt.cm.tab10(i % 10) for i, kind in enumerate(kinds)}
        fig, axes = plt.subplots(2, len(tasks), figsize=(4.6 * len(tasks), 7.0), squeeze=False)
        for col, task in enumerate(tasks):
            here = [c for c in mine if c["task"] == task]
            metric = next(iter(here[0]["metrics"]))
            for row, (label, quantity) in enumerate((("consistency with full", "consistency.output_match"),
                                                     (metric, f"metrics.{metric}"))):
                ax = axes[row][col]
                curves: dict[str, list] = defaultdict(list)
                drawn: list[tuple[float, float, object, str]] = []  # (x, y, color, name) of every point
                for cell in here:
                    m, point = method_of(cell), _point(cell, quantity)
                    if point is None:
                        continue
                    x, y = point[0]["value"], point[1]["value"]
                    if m.kind == "ee":
                        drawn.append((x, y, colors[m.exit_kind], m.exit_kind if m.calibrated else ""))
                    elif m.kind in ("prune", "spec"):
                        drawn.append((x, y, SPEC_COLOR if m.kind == "spec" else "black", cell["method"]))
                    if m.kind == "ee" and m.calibrated:
                        curves[m.exit_kind].append(point)
                    elif m.kind == "ee":
                        ax.plot(point[0]["value"], point[1]["value"], marker="o", markersize=4, linestyle="none",
                                markerfacecolor="none", color=colors[m.exit_kind], alpha=0.7)
                    elif m.kind == "prune" and m.prune > 0:
                        ax.errorbar(point[0]["value"], point[1]["value"], xerr=error([point[0]]), yerr=error([point[1]]),
                                    marker="s", color="black", capsize=2, linestyle="none")
                        ax.annotate(cell["method"], (point[0]["value"], point[1]["value"]), fontsize=6,
                                    xytext=(3, 3), textcoords="offset points")
                    elif m.kind == "oracle":
                        ax.axvline(point[0]["value"], color="black", linestyle=":", linewidth=1)
                        ax.annotate("oracle", (point[0]["value"], ax.get_ylim()[0]), fontsize=6, rotation=90,
                                    xytext=(2, 4), textcoords="offset points")
                    elif m.kind == "full":
                        ax.plot(0.0, point[1]["value"], marker="D", color="grey", linestyle="none")
                    elif m.kind == "spec":
                        ax.errorbar(point[0]["value"], point[1]["value"], xerr=error([point[0]]), yerr=error([point[1]]),
                                    marker="D", markersize=5, color=SPEC_COLOR, capsize=2, linestyle="none")
                        ax.annotate(cell["method"], (point[0]["value"], point[1]["value"]), fontsize=6,
                                    xytext=(3, -8), textcoords="offset points")
                for kind, points in sorted(curves.items()):
                    _curve(ax, points, colors[kind], kind)
                _mark_offscale(ax, drawn)
                title = f"{task}"
                if competence.get((backbone, task)):
                    title += "\n" + textwrap.fill("not competent: " + competence[(backbone, task)], 60)
                ax.set_title(title, fontsize=8)
                ax.set_xlabel("decode savings")
                ax.set_ylabel(label)
                ax.grid(alpha=0.3)
        handles = [plt.Line2D([], [], color=colors[k], marker="o", label=k) for k in kinds]
        handles += [plt.Line2D([], [], color="black", marker="s", linestyle="none", label="static pruning"),
                    plt.Line2D([], [], color="black", linestyle=":", label="oracle ceiling"),
                    plt.Line2D([], [], color="grey", marker="D", linestyle="none", label="full"),
                    plt.Line2D([], [], color="grey", marker="o", markerfacecolor="none", linestyle="none",
                               label="fixed threshold")]
        if any(method_of(c).kind == "spec" for c in mine):
            handles.append(plt.Line2D([], [], color=SPEC_COLOR, marker="D", linestyle="none",
                                      label="self-speculative (lossless)"))
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=7, frameon=False)
        fig.suptitle(f"{backbone}: quality against decode savings; curves through the calibrated cells "
                     f"({confidence:.0%} bootstrap intervals on both axes, shaded: the quality interval; "
                     f"\u25c0 on the left edge: decode savings below {LEFT_EDGE}, value beside it)", fontsize=9)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        names += save_figure(fig, out_dir, f"figure1_tradeoff_{backbone}")
    return names


def measured_vs_predicted(latency: list[dict], out_dir: Path, settings: IntervalSettings) -> list[str]:
    """Figure 3: each timed method's measured decode speedup over `full` (batch 1, with its interval over the
    timed prompts) against the speedup its FLOPs predict for the same decode steps, per backbone; the
    diagonal is a method that runs exactly as fast as its FLOPs say, the horizontal line `full`."""
    found = speedups(latency, settings)
    backbones = sorted({l["backbone"] for l in latency})
    fig, axes = plt.subplots(1, max(len(backbones), 1), figsize=(4.8 * max(len(backbones), 1), 4.2), squeeze=False)
    for ax, backbone in zip(axes[0], backbones):
        kinds: dict[str, list[tuple[float, dict, bool]]] = defaultdict(list)
        for entry in latency:
            m = method_of(entry)
            measured = found.get((backbone, entry["method"])) if entry["backbone"] == backbone else None
            predicted = entry["flops_per_decode_token"]["predicted_speedup"]
            if m.kind != "ee" or measured is None or predicted is None:
                continue
            kinds[m.exit_kind].append((predicted, measured, m.calibrated))
        values = [p for points in kinds.values() for p, _, _ in points] + [1.0]
        low, high = min(values) * 0.9, max(values) * 1.1
        ax.plot([low, high], [low, high], color="grey", linestyle=":", linewidth=1, label="as FLOPs predict")
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="full")
        for i, (kind, points) in enumerate(sorted(kinds.items())):
            for predicted, measured, calibrated in points:
                ax.errorbar(predicted, measured["value"], yerr=error([measured]), color=plt.cm.tab10(i % 10),
                            marker="o" if calibrated else "s", markerfacecolor=None if calibrated else "none",
                            capsize=2, linestyle="none", label=kind if (predicted, measured, calibrated) == points[0] else None)
        ax.set_xlabel("speedup the FLOPs predict (decode steps)")
        ax.set_ylabel("measured speedup (decode steps, batch 1)")
        ax.set_title(backbone, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(f"Measured against predicted decode speedup over full ({settings.confidence:.0%} intervals over the "
                 "timed prompts; filled: calibrated rows, open: typed-in thresholds)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out_dir, "figure3_measured_vs_predicted")
