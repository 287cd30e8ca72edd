"""Figures of the evaluations' reports: attack costs by kind (A2D Figures 4-5) and scatter
plots by kind (matplotlib, written next to the tables)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from adaptive.core.plotting import plt
from adaptive.core.plotting import save_figure as _save

__all__ = ["cost_boxplots", "scatter_by_kind"]


def cost_boxplots(costs: dict[str, dict[str, object]], path: Path, title: str,
                  ylabel: str = "attack cost (iterations)") -> Path:
    """A2D Figures 4-5 analogue: one panel per defense engine, a box of attack costs
    (iterations) for benign inputs and for each attack's adversarial examples."""
    import numpy as np

    engines = list(costs)
    cols = len(engines) if len(engines) <= 4 else 3
    rows = -(-len(engines) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(engines):]:
        ax.set_visible(False)
    for ax, engine in zip(axes.flat, engines):
        sources = list(costs[engine])
        data = [np.asarray(costs[engine][s], dtype=float) for s in sources]
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(sources) + 1), sources, rotation=45, ha="right")
        ax.set_title(engine)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def scatter_by_kind(rows: list[dict], xkey: str, ykey: str, path: Path, title: str,
                    xlabel: str, ylabel: str, logx: bool = False) -> Path:
    """One point per row, coloured by its ``kind`` (benign or the attack that made it)."""
    from scipy.stats import spearmanr

    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    both = [(r[xkey], r[ykey]) for r in rows if r.get(xkey) is not None]
    if len(both) > 2 and len({a for a, _ in both}) > 1 and len({b for _, b in both}) > 1:
        rho = spearmanr(*zip(*both)).statistic  # rank correlation: any monotone relation
        title += f"; Spearman ρ = {rho:.2f} (n {len(both)})"
    for kind in kinds:
        pts = [(r[xkey], r[ykey]) for r in rows if r["kind"] == kind and r.get(xkey) is not None]
        if logx:
            pts = [(max(a, 1e-6), b) for a, b in pts]
        if pts:
            ax.scatter(*zip(*pts), s=14, alpha=0.75, label=kind,
                       marker="o" if kind == "benign" else "x")
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title("\n".join(textwrap.wrap(title, 62)), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)
