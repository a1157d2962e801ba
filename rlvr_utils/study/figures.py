"""Seaborn figures from analysis frames. Each function returns its matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .frames import Run, smooth

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


def plot_curves(metrics: pd.DataFrame, ys: tuple[str, ...] = ("reward_mean", "correct_ratio"), window: int = 2):
    """Training curves, moving average over `window` steps, one column per y, hue = objective.

    Seeds of a model x objective are pooled by seaborn into a mean with a 95% CI band.
    """
    if metrics.empty:
        return _empty("no training metrics")
    df = smooth(metrics, list(ys), window)
    models = sorted(df["model"].unique())
    fig, axes = plt.subplots(len(models), len(ys), figsize=(4.2 * len(ys), 3.2 * len(models)), squeeze=False)
    for i, m in enumerate(models):
        for j, y in enumerate(ys):
            ax = axes[i][j]
            sns.lineplot(data=df[df["model"] == m], x="step", y=y, hue="objective", ax=ax, errorbar=("ci", 95))
            ax.set_title(f"{m}: {y} (MA{window})")
    fig.tight_layout()
    return fig


def plot_final_bars(final: pd.DataFrame, metric: str = "greedy"):
    """Final accuracy by model x objective, with the base model as a dashed line per model."""
    if final.empty:
        return _empty("no evaluations")
    fig, ax = plt.subplots(figsize=(1.6 * final["objective"].nunique() * final["model"].nunique() + 2, 3.6))
    sns.barplot(data=final, x="model", y=metric, hue="objective", ax=ax, errorbar=("ci", 95))
    for i, (_, g) in enumerate(final.groupby("model", sort=False)):
        ax.hlines(g["base"].mean(), i - 0.4, i + 0.4, colors="k", linestyles="--", label="base" if i == 0 else None)
    # single-seed runs: show the bootstrap CI of each bar instead
    if final.groupby(["model", "objective"]).size().max() == 1 and f"{metric}_lo" in final:
        for patch, (_, r) in zip(ax.patches, final.sort_values(["objective", "model"]).iterrows()):
            x = patch.get_x() + patch.get_width() / 2
            ax.errorbar(x, r[metric], yerr=[[r[metric] - r[f"{metric}_lo"]], [r[f"{metric}_hi"] - r[metric]]],
                        color="k", capsize=3)
    ax.set_title(f"final {metric} accuracy (dashed: base model)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def plot_pass_at_k(pk: pd.DataFrame):
    """pass@k vs k (log2), base model vs each objective's final policy, per model."""
    if pk.empty:
        return _empty("no pass@k")
    g = sns.relplot(data=pk, x="k", y="pass@k", hue="policy", col="model", kind="line", marker="o",
                    height=3.2, aspect=1.2, facet_kws={"sharey": False})
    for ax in g.axes.flat:
        ax.set_xscale("log", base=2)
    for (model, _), d in pk.groupby(["model", "policy"]):
        ax = g.axes_dict[model]
        ax.fill_between(d["k"], d["lo"], d["hi"], alpha=0.12)
    g.figure.suptitle("pass@k: base vs trained", y=1.03)
    return g.figure


def plot_counts(table: pd.DataFrame):
    """Subject x level counts (from data.count_table) as a heatmap."""
    t = table.drop(index="total", columns="total", errors="ignore")
    fig, ax = plt.subplots(figsize=(1.1 * len(t.columns) + 3, 0.45 * len(t) + 1.5))
    sns.heatmap(t, annot=True, fmt="d", cmap="Blues", ax=ax, cbar=False)
    ax.set_title("problems per subject x level")
    fig.tight_layout()
    return fig


def plot_delta_vs_rung(effects: pd.DataFrame, k: int = 0):
    """Δpass@k (last evaluation minus the rung's own base) against the prior rung, a line per objective,
    with each cell's 95% interval as `perseed.perseed_effect_table` formed it: filled markers over seeds, hollow
    over problems (one seed, or seeds that moved by exactly the same amount)."""
    if effects.empty:
        return _empty("no effects yet")
    k = k or int(effects["k"].max())
    d = effects[effects["k"] == k].sort_values("rung_order")
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    rungs = list(dict.fromkeys(d["rung"]))
    n_obj = d["objective"].nunique()
    for i, (obj, g) in enumerate(d.groupby("objective")):
        # objectives a little apart, so overlapping intervals stay readable
        x = [rungs.index(r) + 0.06 * (i - (n_obj - 1) / 2) for r in g["rung"]]
        color = ax.plot(x, g["delta"], label=obj)[0].get_color()
        for xi, e in zip(x, g.itertuples()):
            err = [[max(0.0, e.delta - e.lo)], [max(0.0, e.hi - e.delta)]] if e.over != "none" else None
            ax.errorbar(xi, e.delta, yerr=err, fmt="o" if e.over != "none" else "x", color=color, capsize=3,
                        mfc=color if e.over == "seeds" else "white")
    if d["over"].str.startswith("problems").any():
        ax.plot([], [], "o", color="grey", mfc="white", label="hollow: CI over problems")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(rungs)), rungs)
    ax.set_xlabel("prior rung")
    ax.set_ylabel(f"Δ pass@{k} vs the rung's base")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_prior(effects: pd.DataFrame, contrasts: pd.DataFrame, base: pd.Series, ks: tuple[int, ...],
               a: str = "nsr", b: str = "psr"):
    """The study in one figure: per k, each objective's Δpass@k against its rung's base pass@1 (`crossed.crossed_effect_table`:
    seeds and problems random), then a − b per rung at each k (`perseed.contrast_table`: paired by seed, t over
    seeds). The x axis is skill, the base's sampled pass@1, so rungs of different size and dose line up by it."""
    if effects.empty:
        return _empty("no effects yet")
    fig, axes = plt.subplots(1, len(ks) + 1, figsize=(5.4 * (len(ks) + 1), 3.8))
    x = lambda rungs: [base[r] for r in rungs]  # noqa: E731
    err = lambda g: [(g["est"] - g["lo"]).clip(lower=0), (g["hi"] - g["est"]).clip(lower=0)]  # noqa: E731
    for ax, k in zip(axes, ks):
        for i, (obj, g) in enumerate(effects[effects["k"] == k].groupby("objective")):
            g = g.assign(x=[v * 1.025 ** (i - 1) for v in x(g["rung"])]).sort_values("x")  # apart, to read each bar
            ax.errorbar(g["x"], g["est"], yerr=err(g), fmt="o-", capsize=3, label=obj)
        ax.set(title=f"Δpass@{k} (seeds and problems random)", ylabel=f"Δpass@{k}")
    ax = axes[-1]
    for i, k in enumerate(ks):
        g = contrasts[(contrasts["a"] == a) & (contrasts["b"] == b) & (contrasts["k"] == k) & contrasts["rung"].isin(base.index)]
        g = g.assign(x=[v * 1.025 ** i for v in x(g["rung"])]).sort_values("x")
        ax.errorbar(g["x"], g["est"], yerr=err(g), fmt="o-", capsize=3, label=f"pass@{k}")
    ax.set(title=f"{a.upper()} − {b.upper()} (paired by seed, t over seeds)", ylabel="difference in Δpass@k")
    log = bool((base > 0).all())  # a base that never solves a problem has no place on a log axis
    for ax in axes:  # skill spans a decade: a log axis spaces the rungs evenly enough to name each
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log" if log else "linear")
        ax.set_xticks(list(base.values), [f"{r}\n{v:.2f}" for r, v in base.items()], fontsize="x-small")
        ax.minorticks_off()
        ax.set_xlabel("rung (base pass@1" + (", log scale)" if log else ")"))
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
