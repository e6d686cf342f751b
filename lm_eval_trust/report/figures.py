"""The report's PNG figures: a radar of the eight dimensions, and score against compression.

matplotlib is imported only when a figure is drawn, so reading and comparing runs never needs it. A
figure with no scored point is not drawn (None), and every label is plain text (`plain_label`).
"""

from __future__ import annotations

import math
from pathlib import Path

from lm_eval_trust.compression import PRUNERS, QUANTIZERS
from lm_eval_trust.report.comparison import DIMENSIONS, SHORT_NAMES
from lm_eval_trust.report.runs import DENSE_BITS


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plain_label(text: str) -> str:
    """`text` as matplotlib draws it literally: it reads `$...$` as TeX math (a name such as
    `m$\\bogus$` would fail to draw)."""
    return str(text).replace("$", r"\$")


def dimension_scores(row: dict) -> list[float]:
    """The eight dimension scores, NaN where missing (so nothing is drawn there, never a zero)."""
    return [math.nan if row["cells"][d]["score"] is None else row["cells"][d]["score"] for d in DIMENSIONS]


def radar_figure(comparison: dict, path: Path) -> Path | None:
    import numpy as np

    if all(math.isnan(v) for row in comparison["rows"] for v in dimension_scores(row)):
        return None
    plt = _pyplot()
    angles = np.linspace(0, 2 * np.pi, len(DIMENSIONS), endpoint=False)
    closed = np.append(angles, angles[0])
    fig, ax = plt.subplots(figsize=(7.5, 6.5), subplot_kw={"projection": "polar"})
    for row in comparison["rows"]:
        values = np.array(dimension_scores(row))
        ring = np.append(values, values[0])
        (line,) = ax.plot(
            closed,
            ring,
            marker="o",
            linewidth=2 if row["is_baseline"] else 1.3,
            label=plain_label(row["label"]),
        )
        if not np.isnan(values).any():
            ax.fill(closed, ring, color=line.get_color(), alpha=0.08)
    ax.set_xticks(angles)
    ax.set_xticklabels([SHORT_NAMES[d] for d in DIMENSIONS])
    ax.set_ylim(0, 100)
    ax.set_yticks([20, 40, 60, 80, 100])
    ax.set_yticklabels(["20", "40", "60", "80", "100"], fontsize=8)
    ax.set_title("DecodingTrust scores (0-100, higher is more trustworthy)", pad=20)
    ax.legend(loc="upper left", bbox_to_anchor=(1.1, 1.0), fontsize=9, title="model")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def compression_figure(comparison: dict, path: Path) -> Path | None:
    """Score vs bits for quantization (dense at 16), and per pruning method at its structure, per dimension;
    None when no baseline score and no quantized or pruned score is there to draw."""
    plt = _pyplot()
    rows = comparison["rows"]
    base = next(r for r in rows if r["is_baseline"])
    quant = [r for r in rows if r["method"] in QUANTIZERS]
    pruned = [r for r in rows if r["pruning"]]
    kinds = [k for k, members in (("quantization", quant), ("pruning", pruned)) if members] or [
        "quantization"
    ]
    ncols, nrows = 2 * len(kinds), math.ceil(len(DIMENSIONS) / 2)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.25 * nrows), squeeze=False)
    settings = sorted({r["pruning"] for r in pruned})
    for i, d in enumerate(DIMENSIONS):
        for j, kind in enumerate(kinds):
            ax = axes[i // 2][(i % 2) * len(kinds) + j]
            dense = base["cells"][d]["score"]
            if dense is not None:
                ax.axhline(
                    dense,
                    color="grey",
                    linestyle="--",
                    linewidth=1,
                    label=plain_label(f"{base['label']} (baseline)"),
                )
            if kind == "quantization":
                _draw_quantization(ax, quant, base, d)
            else:
                _draw_pruning(ax, pruned, settings, d)
            if dense is None and all(r["cells"][d]["score"] is None for r in rows):
                ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes, color="grey")
            ax.set_title(f"{SHORT_NAMES[d]} - {kind}", fontsize=10)
            ax.set_ylabel("score (0-100)")
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
    if len(DIMENSIONS) % 2:
        for ax in axes[-1][len(kinds) :]:
            ax.axis("off")
    handles = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if not handles:
        plt.close(fig)
        return None
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(len(handles), 5), fontsize=9)
    fig.suptitle("Trust score against compression (missing points: dimension not run)")
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _draw_quantization(ax, quant: list[dict], base: dict, dimension: str) -> None:
    dense = base["cells"][dimension]["score"]
    for method in sorted({r["method"] for r in quant}):
        points = sorted((r["bits"], r["cells"][dimension]["score"]) for r in quant if r["method"] == method)
        points = [(b, s) for b, s in points if s is not None]
        if dense is not None:
            points.append((DENSE_BITS, dense))
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=plain_label(method.upper()))
    ax.set_xscale("log", base=2)
    ticks = sorted({r["bits"] for r in quant} | {DENSE_BITS})
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.set_xlim(min(ticks) / 1.3, DENSE_BITS * 1.3)
    ax.set_xlabel("bits per weight (dense = 16)")


def _draw_pruning(ax, pruned: list[dict], settings: list[str], dimension: str) -> None:
    markers = dict(zip(PRUNERS + ("none",), "s^Dv", strict=True))
    methods = sorted({r["method"] for r in pruned})
    for k, method in enumerate(methods):
        offset = 0.12 * (k - (len(methods) - 1) / 2)  # side by side, so equal scores stay visible
        points = [
            (settings.index(r["pruning"]) + offset, r["cells"][dimension]["score"])
            for r in pruned
            if r["method"] == method and r["cells"][dimension]["score"] is not None
        ]
        name = "pruned elsewhere" if method == "none" else method
        if points:
            ax.plot(
                *zip(*points, strict=True),
                linestyle="none",
                marker=markers.get(method, "o"),
                markersize=8,
                label=plain_label(name),
            )
    ax.set_xticks(range(len(settings)))
    ax.set_xticklabels([plain_label(s) for s in settings], fontsize=8)
    ax.set_xlim(-0.6, len(settings) - 0.4)
    ax.set_xlabel("pruning structure (sparsity)")
