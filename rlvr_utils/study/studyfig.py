"""The study's figures, read at a glance: each objective's change in pass@1 and pass@k per rung with NSR − PSR beside
them (the pre-registered ends marked), and pass@k against k per rung, absolute and against the base. One interval
kind throughout (`passk.INTERVAL`), clipped to what the quantity can be; a hollow marker where the interval is wider
than that whole range (not drawn). Rungs are short names (1m/1M) ordered by their base's pass@1; the family's dose
ladder and size ladder get their own marker and line style."""

from __future__ import annotations

import re
import textwrap

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.lines import Line2D

from .perseed import objective_label
from .passk import INTERVAL
from .safehtml import mpl_text

COLORS = {"psr": "#dd8452", "nsr": "#4c72b0", "w_reinforce": "#55a868", "reinforce": "#8172b3", "grpo": "#937860",
          "base": "#222222"}
LADDER_STYLE = {"dose": ("o", "-"), "size": ("s", "--"), "both": ("D", "-"), "": ("o", "-")}
SERIES = ("#222222", "#b07aa1", "#9c755f")  # the contrast's ks: not an objective's colour
CAPTION = (f"{INTERVAL}, clipped to the feasible range; a hollow marker: the interval is wider than that whole range "
           "(not drawn).")


def color(obj: str) -> str:
    return COLORS.get(obj.partition("[")[0], "#777777")


def ladders(rungs: list[str]) -> dict[str, str]:
    """Per family rung (`1m/2M`): on the dose ladder (one size, several doses), the size ladder (one dose, several
    sizes), both, or neither ('' also for other rungs)."""
    parts = {r: m.groups() for r in rungs if (m := re.fullmatch(r"(\d+m)/(\S+)", r))}
    if not parts:
        return {r: "" for r in rungs}
    size = pd.Series([s for s, _ in parts.values()]).mode()[0]
    dose = pd.Series([d for s, d in parts.values() if s != size] or [d for _, d in parts.values()]).mode()[0]
    dose_l = {r for r, (s, _) in parts.items() if s == size}
    size_l = {r for r, (_, d) in parts.items() if d == dose} if len({s for s, _ in parts.values()}) > 1 else set()
    dose_l = dose_l if len(dose_l) > 1 else set()
    return {r: "both" if r in dose_l and r in size_l else "dose" if r in dose_l else "size" if r in size_l else ""
            for r in rungs}


def _errorbar(ax, x, row, c, marker):
    """One point with its clipped interval, or hollow and without a bar where the interval says nothing."""
    if row["wide"] or row["lo"] != row["lo"]:
        ax.plot([x], [row["est"]], marker=marker, color=c, mfc="white", ms=6, ls="none")
        return
    ax.errorbar([x], [row["est"]], yerr=[[max(0.0, row["est"] - row["lo_clip"])], [max(0.0, row["hi_clip"] - row["est"])]],
                fmt=marker, color=c, ms=5, capsize=3, lw=1.2)


def _rung_panel(ax, rows: pd.DataFrame, order: list[str], ladder: dict[str, str], series: str, label_of=None):
    """Points of each `series` value against the rungs (categorical x in `order`), lines along each ladder."""
    groups = list(rows.groupby(series, sort=True))
    for i, (key, g) in enumerate(groups):
        c = color(str(key)) if label_of is None else SERIES[i % len(SERIES)]
        g = g.set_index("rung")
        dx = 0.09 * (i - (len(groups) - 1) / 2)  # apart, so overlapping intervals stay readable
        for lad in ("dose", "size", ""):
            on = [r for r in order if r in g.index and (ladder[r] in (lad, "both") if lad else ladder[r] == "")]
            if len(on) > 1:
                ax.plot([order.index(r) + dx for r in on], [g.loc[r, "est"] for r in on], color=c,
                        ls=LADDER_STYLE[lad][1], lw=1.3, alpha=0.8)
        for r in order:
            if r in g.index:
                _errorbar(ax, order.index(r) + dx, g.loc[r], c, LADDER_STYLE[ladder[r]][0])
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(order)), [mpl_text(r) for r in order])
    ax.set_xlim(-0.5, len(order) - 0.5)


def rung_order(base: pd.Series) -> list[str]:
    """Rungs ordered by their base's pass@1 (skill), so sizes and doses line up."""
    return list(base.sort_values().index)


def draw_study_row(axes, pk: pd.DataFrame, con: pd.DataFrame, base: pd.Series, ks: tuple[int, ...],
                   ends: tuple[str, str] | None = None, pair: tuple[str, str] = ("nsr", "psr")) -> None:
    """Δpass@k per objective at each of `ks`, then a − b per rung at each k, on `axes` (len(ks) + 1)."""
    order = rung_order(base)
    ladder = ladders(order)
    ticks = [f"{mpl_text(r)}\n{base[r]:.2f}" for r in order]
    d = pk[(pk["which"] == "delta") & (pk["objective"] != "base")]
    for ax, k in zip(axes, ks):
        _rung_panel(ax, d[d["k"] == k], order, ladder, "objective")
        ax.set_title(f"Δpass@{k} after training")
        ax.set_ylabel(f"Δpass@{k} vs the rung's base")
    ax = axes[len(ks)]
    a, b = (objective_label(o) for o in pair)
    if not con.empty:
        _rung_panel(ax, con.assign(series=con["k"].map(lambda k: f"pass@{k}")), order, ladder, "series", label_of=True)
    ax.set_title(f"{a} − {b}, per rung")
    ax.set_ylabel(f"Δ{a} − Δ{b} (pass@k)")
    for ax in axes[: len(ks) + 1]:
        ax.set_xticks(range(len(order)), ticks, fontsize="small")
        ax.set_xlabel("rung (base pass@1 under each)")
        if ends:  # the pre-registered contrast: its two end rungs
            for r in ends:
                if r in order:
                    ax.axvspan(order.index(r) - 0.4, order.index(r) + 0.4, color="#f2c14e", alpha=0.18, lw=0)


def legend_handles(objectives: list[str], ladder: dict[str, str], ks: tuple[int, ...] = (), ends: bool = False,
                   base: bool = False) -> list:
    """One legend for a whole figure: objectives by colour, ladders by marker and line, the ends' shading."""
    h = [Line2D([], [], color=color(o), marker="o", label=objective_label(o)) for o in objectives]
    h += [Line2D([], [], color="#222222", ls="--", label="base (before training)")] if base else []
    h += [Line2D([], [], color=SERIES[i % len(SERIES)], marker="o", label=f"NSR − PSR at pass@{k}")
          for i, k in enumerate(ks)]
    used = set(ladder.values())
    for lad, what in (("dose", "dose ladder (one size, more tokens)"), ("size", "size ladder (one dose, larger models)"),
                      ("both", "on both ladders")):
        if lad in used:
            m, ls = LADDER_STYLE[lad]
            h.append(Line2D([], [], color="grey", marker=m, ls=ls if lad != "both" else "none", label=what))
    if ends:
        h.append(plt.Rectangle((0, 0), 1, 1, color="#f2c14e", alpha=0.35, label="pre-registered ends (lowest vs highest rung)"))
    h.append(Line2D([], [], color="grey", marker="o", mfc="white", ls="none", label="interval wider than the range"))
    return h


def draw_passk_rows(axes_abs, axes_delta, pk: pd.DataFrame, base: pd.Series) -> None:
    """Per rung (columns, by skill): pass@k against k (log2), the base and each objective; then the change."""
    order = rung_order(base)
    for j, r in enumerate(order):
        for row, axes in (("abs", axes_abs), ("delta", axes_delta)):
            if axes is None:
                continue
            ax = axes[j]
            g = pk[pk["rung"] == r]
            g = g[g["which"] == "delta"] if row == "delta" else g[g["which"] != "delta"]
            for obj, o in g.groupby("objective", sort=True):
                o = o.sort_values("k")
                c = color(obj)
                ax.plot(o["k"], o["est"], color=c, ls="--" if obj == "base" else "-", marker="o", ms=3, lw=1.3)
                ok = ~o["wide"] & o["lo"].notna()
                ax.fill_between(o["k"][ok], o["lo_clip"][ok], o["hi_clip"][ok], color=c, alpha=0.15, lw=0)
                if (~ok).any():
                    ax.plot(o["k"][~ok], o["est"][~ok], "o", color=c, mfc="white", ms=5)
            ax.set_xscale("log", base=2)
            ks = sorted(pk["k"].unique())
            ax.set_xticks(ks, [str(k) for k in ks], fontsize="small")
            ax.minorticks_off()
            if row == "delta":
                ax.axhline(0, color="grey", lw=0.8)
                ax.set_xlabel("k")
            else:
                ax.set_title(f"{mpl_text(r)} (base pass@1 {base[r]:.2f})", fontsize="medium")
            if j == 0:
                ax.set_ylabel("pass@k" if row == "abs" else "Δpass@k vs base")


def wrap_title(text: str, width: int = 150) -> str:
    return "\n".join(textwrap.wrap(mpl_text(text), width))


def _legend(fig, handles, ncol: int | None = None) -> None:
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol or min(len(handles), 5), fontsize="small",
               frameon=False)


def plot_study(pk: pd.DataFrame, con: pd.DataFrame, base: pd.Series, ks: tuple[int, ...],
               ends: tuple[str, str] | None = None, title: str = ""):
    """The study in one row: Δpass@k per objective at each of `ks`, and NSR − PSR per rung."""
    fig, axes = plt.subplots(1, len(ks) + 1, figsize=(5.2 * (len(ks) + 1), 4.6), layout="constrained")
    draw_study_row(axes, pk, con, base, ks, ends)
    objs = sorted(o for o in pk["objective"].unique() if o != "base")
    _legend(fig, legend_handles(objs, ladders(rung_order(base)), tuple(sorted(con["k"].unique())) if len(con) else (),
                                ends=bool(ends)), ncol=4)
    if title:
        fig.suptitle(wrap_title(title, 130), fontsize="medium")
    return fig


def plot_passk(pk: pd.DataFrame, base: pd.Series, title: str = ""):
    """pass@k against k per rung: the base and each objective after training (top), the change (bottom)."""
    n = len(base)
    fig, axes = plt.subplots(2, n, figsize=(3.3 * n + 1, 6.4), layout="constrained", sharex=True, sharey="row",
                             squeeze=False)
    draw_passk_rows(axes[0], axes[1], pk, base)
    objs = sorted(o for o in pk["objective"].unique() if o != "base")
    _legend(fig, legend_handles(objs, {}, base=True), ncol=len(objs) + 2)
    if title:
        fig.suptitle(wrap_title(title, 130), fontsize="medium")
    return fig


def plot_study_full(pk: pd.DataFrame, con: pd.DataFrame, base: pd.Series, ks: tuple[int, ...],
                    ends: tuple[str, str] | None, title: str, caption: str = CAPTION):
    """`rlvr report --summary --figure`: the answer as the title, the study row, and pass@k against k per rung."""
    n = len(base)
    fig = plt.figure(figsize=(max(16.0, 3.3 * n + 1), 13.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.0, 1.35])
    draw_study_row(top.subplots(1, len(ks) + 1), pk, con, base, ks, ends)
    axes = bottom.subplots(2, n, sharex=True, sharey="row", squeeze=False)
    draw_passk_rows(axes[0], axes[1], pk, base)
    bottom.suptitle("pass@k against k, per rung: before and after training (top), the change (bottom)",
                    fontsize="medium")
    objs = sorted(o for o in pk["objective"].unique() if o != "base")
    _legend(fig, legend_handles(objs, ladders(rung_order(base)), tuple(sorted(con["k"].unique())) if len(con) else (),
                                ends=bool(ends), base=True), ncol=5)
    fig.suptitle(wrap_title(title, 120), fontsize="large", fontweight="bold")
    top.suptitle(mpl_text(caption), fontsize="small")
    return fig


def _drawn_texts(fig) -> list:
    """Every text the figure draws: (sub)figure titles and texts, axes titles and labels, the tick labels inside the
    view, legend entries."""
    out = []
    figs = [fig, *fig.subfigs] if hasattr(fig, "subfigs") else [fig]
    for f in figs:
        out += [t for t in (getattr(f, "_suptitle", None), *f.texts) if t is not None]
        out += [t for leg in f.legends for t in leg.get_texts()]
    for ax in fig.get_axes():
        out += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
        for axis in (ax.xaxis, ax.yaxis):
            out += [t.label1 for t in axis._update_ticks()] + [t.label2 for t in axis._update_ticks()]
        if ax.get_legend():
            out += ax.get_legend().get_texts()
    seen, texts = set(), []
    for t in out:
        if id(t) not in seen and t.get_visible() and str(t.get_text()).strip():
            seen.add(id(t))
            texts.append(t)
    return texts


def text_overlaps(fig) -> list[tuple[str, str]]:
    """Pairs of drawn texts (titles, axis and tick labels, legend entries) whose boxes overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer).expanded(0.96, 0.85)) for t in _drawn_texts(fig)]
    return [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:] if ba.overlaps(bb)]
