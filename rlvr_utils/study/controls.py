"""The controls study's summary (docs/prereg-controls.md): pass@k to k = 256 per rung x objective beside the guessing
floor, the figure of pass@k against k, NSR − PSR per rung with builds, seeds and problems random (its variance
components), the slope over the rungs' base skill (and on the logit scale), and every rung pair.

`python -m rlvr_utils.study.controls RUNS [--protocol paper] [--out SUMMARY.md] [--figure PASSK.png]`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from ..core.files import emit
from ..core.stats import fmt_bounds, fmt_interval, ks_for, pass_at_k
from ..data.guessing import task_floor
from ..data.tasks import is_task_spec
from .outcomes import build_analyses, problem_counts
from .nested import nested_mean
from .slopes import slope_span, to_array


def passk_table(counts: pd.DataFrame, ks: list[int]) -> pd.DataFrame:
    """Per rung x objective x k: the mean pass@k of the base and of the final policies, each with builds, seeds and
    problems random (`nested_mean` of the per-problem pass@k)."""
    rows = []
    for (rung, obj), g in counts.groupby(["rung", "objective"]):
        for k in ks:
            row = {"rung": rung, "rung_order": g["rung_order"].iloc[0], "objective": obj, "k": k}
            for side in ("base", "final"):
                v = g.assign(v=[pass_at_k(int(n), int(c), k) for n, c in zip(g["n"], g[side])])
                _, Y = to_array(v.assign(r=0), "v", rung="r")
                c = nested_mean(Y[0])
                row |= {side: c.est, f"{side}_lo": c.lo, f"{side}_hi": c.hi}
            rows.append(row)
    return pd.DataFrame(rows).sort_values(["rung_order", "objective", "k"])


def floors(runs_dir: str | Path, ks: list[int]) -> dict[int, float]:
    """The guessing floor of the grid's task (its first run's `data`), or {} for a task that is not generated."""
    cfg = next(json.loads((p / "config.json").read_text()) for p in sorted(Path(runs_dir).iterdir())
               if (p / "config.json").exists())
    return task_floor(cfg["data"], tuple(ks))["floor"] if is_task_spec(cfg.get("data")) else {}


def passk_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """`table` as the study's figures draw pass@k against k (`studyfig.draw_passk_rows`): per short rung name, the
    base (its mean over the objectives' runs) and each objective's final, intervals clipped to [0, 1] and `wide` where
    wider than that; and each rung's base pass@1 (their order)."""
    t = table.assign(rung=table["rung"].str.split(" ").str[0])
    base = t.groupby(["rung", "k"], sort=False)[["base", "base_lo", "base_hi"]].mean().reset_index()
    parts = [base.set_axis(["rung", "k", "est", "lo", "hi"], axis=1).assign(objective="base", which="base"),
             t[["rung", "k", "final", "final_lo", "final_hi", "objective"]]
             .set_axis(["rung", "k", "est", "lo", "hi", "objective"], axis=1).assign(which="final")]
    pk = pd.concat(parts, ignore_index=True)
    pk = pk.assign(lo_clip=pk["lo"].clip(lower=0), hi_clip=pk["hi"].clip(upper=1), wide=pk["hi"] - pk["lo"] > 1)
    return pk, base[base["k"] == base["k"].min()].set_index("rung")["base"]


def figure(table: pd.DataFrame, floor: dict[int, float], out: str | Path) -> None:
    """pass@k against k (log scale), one panel per rung, base and each objective's final with 95% intervals (builds,
    seeds and problems random), drawn as the study's figures draw them (`studyfig.draw_passk_rows`), the guessing
    floor dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from .studyfig import color, draw_passk_rows

    pk, base = passk_rows(table)
    fig, axes = plt.subplots(1, len(base), figsize=(3.6 * len(base), 3.6), sharey=True, squeeze=False)
    draw_passk_rows(axes[0], None, pk, base)
    for ax in axes[0]:
        if floor:
            ax.plot(sorted(floor), [floor[k] for k in sorted(floor)], "k:", lw=1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("k")
    handles = [Line2D([], [], color=color(o), marker="o", ms=3, ls="--" if o == "base" else "-",
                      label="base" if o == "base" else o.upper()) for o in sorted(pk["objective"].unique())]
    handles.append(Line2D([], [], color="k", ls=":", lw=1, label="guessing floor"))
    axes[0][-1].legend(handles=handles, fontsize=7)
    fig.text(0.01, 0.01, "95% intervals, builds, seeds within builds and problems random, clipped to [0, 1]; a hollow "
             "marker: the interval is wider than that whole range (not drawn)", fontsize=7, color="dimgray", wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(out, dpi=120)
    plt.close(fig)


def summary(runs_dir: str | Path, protocol: str | None = None, goals: tuple[float, float] = (0.02, 0.05),
            fig: str | Path | None = None) -> str:
    """The markdown summary (and, with `fig`, the figure) of a controls grid."""
    counts = problem_counts(runs_dir, protocol)
    n = int(counts["n"].min())
    ks = [k for k in ks_for(n) if 2 * k <= n] or [1]
    table = passk_table(counts, ks)
    floor = floors(runs_dir, ks)
    if fig:
        figure(table, floor, fig)
    out = [f"# Controls: {runs_dir} ({protocol or 'the main sampled protocol'}, n = {n})", "",
           "Intervals are 95%, with builds, seeds within builds and problems random (Satterthwaite df). An estimate "
           "alone: its variance estimate is not positive at this n; *wider than the whole range*: its df is so small "
           "that the interval says nothing.", "",
           "| rung | objective | k | base | final | guessing floor |", "|---|---|---|---|---|---|"]
    for r in table.itertuples():
        out.append(f"| {r.rung.split(' ')[0]} | {r.objective} | {r.k} | {fmt_interval(r.base, r.base_lo, r.base_hi, span=1)} | "
                   f"{fmt_interval(r.final, r.final_lo, r.final_hi, span=1)} | {floor.get(r.k, float('nan')):.3f} |")
    for k, goal in ((1, goals[0]), (ks[-1], goals[1])):
        res = build_analyses(counts, k, goal)
        out += ["", f"## NSR − PSR at pass@{k} (builds, seeds within builds, problems random)", "",
                "| rung | est [95%] | df | var_build | var_seed | var_problem | var_build×problem | var_resid |",
                "|---|---|---|---|---|---|---|---|"]
        for rung, c in res["per_rung"].items():
            out.append(f"| {rung.split(' ')[0]} | {fmt_interval(c.est, c.lo, c.hi, span=2)} | {c.df:.1f} | {c.var_build:.2e} | "
                       f"{c.var_seed:.2e} | {c.var_problem:.2e} | {c.var_build_problem:.2e} | {c.var_resid:.2e} |")
        s = res["slope"]
        out += ["", f"Slope over the rungs' base pass@1 ({', '.join(f'{x:.3f}' for x in res['x'])}): "
                f"{fmt_interval(s.est, s.lo, s.hi, span=slope_span(res['x']))} per unit of base pass@1 ({s.df:.1f} df)."]
        if "slope_logit" in res:
            sl = res["slope_logit"]
            out.append(f"On the logit scale (per-problem empirical logits): {fmt_interval(sl.est, sl.lo, sl.hi)}.")
        out += ["", res["pairs_note"], "", "| low | high | est [95%] | answer | Bonferroni | answer |",
                "|---|---|---|---|---|---|"]
        for p in res["pairs"].itertuples():
            out.append(f"| {p.low.split(' ')[0]} | {p.high.split(' ')[0]} | {fmt_interval(p.est, p.lo, p.hi, span=2)} | "
                       f"{p.answer} | {fmt_bounds(p.lo_bonf, p.hi_bonf, span=2)} | {p.answer_bonf} |")
    out += ["", "## NSR − PSR at every k (builds, seeds, problems random)", "",
            "| k | " + " | ".join(r.split(' ')[0] for r in res["rungs"]) + " | slope over base pass@1 |",
            "|---|" + "---|" * (len(res["rungs"]) + 1)]
    for k in ks:
        r = build_analyses(counts, k, goals[1])
        cells = [fmt_interval(c.est, c.lo, c.hi, span=2) for c in r["per_rung"].values()]
        sl = fmt_interval(r["slope"].est, r["slope"].lo, r["slope"].hi, span=slope_span(r["x"]))
        out.append(f"| {k} | " + " | ".join(cells) + f" | {sl} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs")
    ap.add_argument("--protocol", default=None, help="a name of the runs' eval_protocols (default: the main one)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--figure", default=None)
    a = ap.parse_args(argv)
    text = summary(a.runs, a.protocol, fig=a.figure)
    return emit(text, a.out)


if __name__ == "__main__":
    raise SystemExit(main())
