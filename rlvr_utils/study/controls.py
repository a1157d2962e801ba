"""The controls study's summary (docs/prereg-controls.md): pass@k to k = 256 per rung x objective beside the guessing
floor, the figure of pass@k against k, NSR − PSR per rung with builds, seeds and problems random (its variance
components), the slope over the rungs' base skill (and on the logit scale), and every rung pair.

`python -m rlvr_utils.study.controls RUNS [--protocol paper] [--out SUMMARY.md] [--figure PASSK.png]`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.stats import fmt_interval, ks_for, pass_at_k
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


def passk_curve(ax, k, est, lo, hi, **kw) -> None:
    """est against k with its 95% interval clipped to [0, 1]; hollow and without a bar where the interval is wider
    than that whole range or missing (a nested interval on 2 builds can have df < 1: at this n it says nothing)."""
    k, est, lo, hi = (np.asarray(a, dtype=float) for a in (k, est, lo, hi))
    wide = ~(hi - lo <= 1)  # NaN: no interval
    color = ax.plot(k, est, marker="o", ms=3, **kw)[0].get_color()
    ok = ~wide
    ax.errorbar(k[ok], est[ok], yerr=[(est - lo.clip(0, 1))[ok], (hi.clip(0, 1) - est)[ok]], fmt="none",
                ecolor=color, capsize=2)
    ax.plot(k[wide], est[wide], "o", mfc="white", mec=color, ms=6, ls="none")


def figure(table: pd.DataFrame, floor: dict[int, float], out: str | Path) -> None:
    """pass@k against k (log scale), one panel per rung, base and each objective's final with 95% intervals (builds,
    seeds and problems random; hollow: wider than [0, 1] or none), the guessing floor dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rungs = list(dict.fromkeys(table["rung"]))
    fig, axes = plt.subplots(1, len(rungs), figsize=(3.2 * len(rungs), 3.4), sharey=True, squeeze=False)
    for ax, rung in zip(axes[0], rungs):
        t = table[table["rung"] == rung]
        base = t.groupby("k")[["base", "base_lo", "base_hi"]].mean()
        passk_curve(ax, base.index, base["base"], base["base_lo"], base["base_hi"], color="gray", label="base")
        for obj, g in t.groupby("objective"):
            passk_curve(ax, g["k"], g["final"], g["final_lo"], g["final_hi"], label=obj.upper())
        if floor:
            ax.plot(sorted(floor), [floor[k] for k in sorted(floor)], "k--", lw=1, label="guessing floor")
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(rung.split(" ")[0])
        ax.set_xlabel("k")
    axes[0][0].set_ylabel("pass@k")
    axes[0][-1].legend(fontsize=7)
    fig.text(0.01, 0.01, "bars: 95% intervals (builds, seeds, problems random); hollow: wider than [0, 1] or none",
             fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
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
            bonf = f"[{p.lo_bonf:+.3f}, {p.hi_bonf:+.3f}]" if p.hi_bonf == p.hi_bonf else "–"  # NaN: no interval
            out.append(f"| {p.low.split(' ')[0]} | {p.high.split(' ')[0]} | {fmt_interval(p.est, p.lo, p.hi, span=2)} | "
                       f"{p.answer} | {bonf} | {p.answer_bonf} |")
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
    if a.out:
        Path(a.out).write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
