"""Seaborn figures from analysis frames. Each function returns its matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from matplotlib.lines import Line2D

from .frames import Run, smooth
from .perseed import objective_label
from .safehtml import mpl_text
from .studyfig import color

sns.set_theme(style="whitegrid", context="notebook")


def _empty(msg: str):
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.text(0.5, 0.5, msg, ha="center", va="center")
    ax.axis("off")
    return fig


def plot_run(run: Run, cols: tuple[str, ...] = ("reward_mean", "kept", "entropy_kept", "response_len_mean")):
    """One run's training curves plus its evaluation accuracy."""
    if run.metrics.empty:
        return _empty(f"{run.name}: no metrics yet")
    fig, axes = plt.subplots(1, len(cols) + 1, figsize=(3.2 * (len(cols) + 1), 3))
    for ax, c in zip(axes, cols):
        sns.lineplot(data=run.metrics, x="step", y=c, ax=ax, marker="o")
        ax.set_title(c)
    if not run.evals.empty:
        ev = run.evals
        axes[-1].plot(ev["step"], ev["greedy"], marker="o", label="greedy")
        axes[-1].fill_between(ev["step"], ev["greedy_lo"], ev["greedy_hi"], alpha=0.2)
        if "pass@1" in ev:
            axes[-1].plot(ev["step"], ev["pass@1"], marker="s", label="pass@1")
        axes[-1].legend()
    axes[-1].set_title("eval accuracy")
    fig.tight_layout()
    return fig


def plot_curves(metrics: pd.DataFrame, ys: tuple[str, ...] = ("reward_mean", "correct_ratio"), window: int = 2,
                by: str = "rung"):
    """Training curves, moving average over `window` steps: a row per rung (`by`), a column per y, a colour per
    objective, one legend for the figure. Seeds of a rung x objective are pooled by seaborn into their mean with a
    95% t-interval band over seeds."""
    if metrics.empty:
        return _empty("no training metrics")
    by = by if by in metrics else "model"
    df = smooth(metrics, list(ys), window)
    rows = list(dict.fromkeys(df.sort_values("rung_order")[by])) if "rung_order" in df else sorted(df[by].unique())
    objs = sorted(df["objective"].unique())
    fig, axes = plt.subplots(len(rows), len(ys), figsize=(4.4 * len(ys), 2.4 * len(rows) + 0.8), squeeze=False,
                             sharex=True, layout="constrained")
    for i, m in enumerate(rows):
        for j, y in enumerate(ys):
            ax = axes[i][j]
            sns.lineplot(data=df[df[by] == m], x="step", y=y, hue="objective", hue_order=objs, ax=ax,
                         errorbar=("se", 1.96) if df["seed"].nunique() > 1 else None, legend=False,
                         palette=[color(o) for o in objs])
            ax.set_title(f"{y}" if i == 0 else "", fontsize="medium")
            ax.set_ylabel(mpl_text(m) if j == 0 else "")
            ax.set_xlabel("step" if i == len(rows) - 1 else "")
    fig.legend(handles=[Line2D([], [], color=color(o), label=objective_label(o)) for o in objs],
               loc="outside lower center", ncol=len(objs), frameon=False)
    fig.suptitle(f"moving average over {window} steps; band: mean ± 1.96 standard errors over seeds", fontsize="small")
    return fig


def plot_counts(table: pd.DataFrame):
    """Subject x level counts (from data.count_table) as a heatmap."""
    t = table.drop(index="total", columns="total", errors="ignore")
    fig, ax = plt.subplots(figsize=(1.1 * len(t.columns) + 3, 0.45 * len(t) + 1.5))
    sns.heatmap(t, annot=True, fmt="d", cmap="Blues", ax=ax, cbar=False)
    ax.set_title("problems per subject x level")
    fig.tight_layout()
    return fig


