"""The secondary analyses as markdown: each rung x objective's change with a t over seeds (the problems held
fixed), the contrasts between objectives, and what training did to the policy on its own prompts (entropy,
distinct answers, length). `report.report_summary` places them after the primary answer."""

from __future__ import annotations

import pandas as pd

from .dynamics import DYNAMICS
from .perseed import (MIXED_NOTE, change_phrase, contrast_table, default_k, noise_floor, objective_label,
                      perseed_effect_table, perseed_interaction, problem_interaction, rung_label)
from .power import design_table
from ..core.stats import OVER_MARK, fmt_interval

def answer(deltas: pd.DataFrame, k: int) -> str:
    """The study's answer in one sentence, with the interaction's CI and the minimum detectable effect.
    Over seeds (t) when every cell has >= 2 seeds; otherwise over problems (bootstrap), and it says so."""
    try:
        it = perseed_interaction(deltas, k)
        over = "95% t-interval over seeds, the objectives paired by seed"
    except ValueError:
        it = problem_interaction(deltas, k)
        seeds = deltas.groupby(["rung_order", "objective"])["seed"].nunique()
        cells = ("every cell's seeds moved by the same amount, so they are averaged per problem" if seeds.min() > 1
                 else "some cells with one seed, others' seeds averaged per problem" if seeds.max() > 1
                 else "one seed per cell")
        over = f"95% bootstrap interval over {it['problems']} problems, {cells}: seed variation not included"
    a, b = (objective_label(o) for o in it["objectives"])
    if it["lo"] > 0 or it["hi"] < 0:
        verdict = change_phrase(a, b, it["ends"], f" at pass@{k}")
    else:
        verdict = f"no detectable change in {a} − {b} at pass@{k} with the prior"
    return (f"{verdict}: difference in differences {fmt_interval(it['did'], it['lo'], it['hi'])} ({over}, "
            f"rung {rung_label(deltas, it['rungs'][0])} vs {rung_label(deltas, it['rungs'][1])}); the smallest effect "
            f"this design detects with 80% power is {it['mde_80']:.3f}.")


def headline(deltas: pd.DataFrame, k: int = 0) -> str:
    """The report's first line: `answer` at pass@k (k=0: `perseed.default_k`), or why this grid
    cannot give one (it needs >= 2 rungs, each with a PSR and an NSR run)."""
    if deltas.empty:
        return "No run has both a step-0 and a later evaluation yet: nothing to compare."
    k = k or default_k(deltas)
    rungs = deltas["rung_order"].dropna().unique()
    if len(rungs) < 2:
        return (f"This grid has {len(rungs)} prior rung(s) ({', '.join(sorted(deltas['rung'].unique()))}): "
                "the prior axis needs two or more (`rlvr grid --profile smoke` or `prior`). Per-objective changes below.")
    try:
        return answer(deltas, k)
    except (KeyError, ValueError) as e:
        return f"No interaction estimate at pass@{k}: {e}."


def summary_markdown(deltas: pd.DataFrame, k: int = 0, secondary: bool = False) -> str:
    """The answer with a t over seeds as markdown (`secondary`: labelled as such, not bold, beneath a primary
    answer), then per rung x objective the change in pass@1 and pass@k with 95% CIs (t over seeds where a cell
    has >= 2, else bootstrap over problems within its one run), and each rung's base with its noise floor."""
    if deltas.empty:
        return headline(deltas, k)
    k = k or default_k(deltas)
    eff = perseed_effect_table(deltas[deltas["k"].isin([1, k])]).set_index(["rung_order", "rung", "objective", "k"])
    floor = noise_floor(deltas)
    rows = [f"| rung | objective | seeds | Δpass@1 | Δpass@{k} |", "|---|---|---|---|---|"]
    for order, rung in deltas[["rung_order", "rung"]].drop_duplicates().sort_values("rung_order").itertuples(index=False):
        rows += _base_rows(floor, rung, k)
        for obj in sorted(deltas[deltas["rung"] == rung]["objective"].unique()):
            cells = [_delta_cell(eff, order, rung, obj, kk) for kk in (1, k)]
            seeds = int(eff["seeds"].get((order, rung, obj, 1), 0))
            rows.append(f"| {rung} | {obj} | {seeds} | {cells[0]} | {cells[1]} |")
    note = ("95% CIs: t over seeds; * marks a cell with one seed, its interval a bootstrap over problems "
            "(seed variation not included); † marks seeds that all changed by exactly the same amount (no "
            "width for a t-interval), its interval a bootstrap over problems with the seeds averaged per "
            "problem. Base rows: the rung's pass@k before training, its SD across sampling seeds (the noise "
            "of one evaluation), and the 95% t half-width of their mean; a rung rebuilt into other weights has a "
            "row per build, naming the cells that started from it.")
    first = (f"With a t over seeds (problems held fixed; the rungs' seeds as independent, a Welch interval): "
             f"{headline(deltas, k)}" if secondary else f"**{headline(deltas, k)}**")
    out = f"{first}\n\n" + "\n".join(rows) + f"\n\n{note}\n"
    contrasts = contrast_markdown(deltas, k)
    if contrasts:
        out += ("\nBetween objectives: each pair's difference in Δpass@k on each rung, and how it changes from the "
                "lowest to the highest rung (95% t-intervals over seeds, the two objectives paired by seed: runs of "
                "one seed share their base evaluation, prompts and first rollouts; * a bootstrap over problems where "
                "a cell has one seed or the seeds agree; " + f"{MIXED_NOTE}; " * ("‡" in contrasts)
                + "secondary comparisons, not adjusted for their number).\n\n"
                f"{contrasts}\n")
    try:  # needs >= 2 seeds in each of the interaction's cells and their per-problem records
        design = design_table(deltas, k)
    except (KeyError, ValueError):
        return out
    return out + (f"\nWhat a larger design would detect at pass@{k} (80% power, 95% level) by this per-seed analysis "
                  "(the primary's projection, seeds and problems random, is `crossed.sizing`'s), projected from this "
                  "grid's variance components: on each rung, the spread of the per-seed contrast split into the "
                  "training runs' own part and a seed × problem part that more evaluation problems average out "
                  f"(`power.variance_components`).\n\n{design}\n")


def contrast_markdown(deltas: pd.DataFrame, k: int = 0) -> str:
    """`contrast_table` as markdown: a row per pair and k, a column per rung and the change across them."""
    k = k or default_k(deltas)
    t = contrast_table(deltas, tuple(sorted({1, k})))
    if t.empty:
        return ""
    cols = t[["rung_order", "rung"]].drop_duplicates().sort_values("rung_order")["rung"].tolist()
    lines = ["| contrast | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for (a, b, kk), g in t.groupby(["a", "b", "k"], sort=False):
        cell = {r["rung"]: fmt_interval(r["est"], r["lo"], r["hi"]) + "*" * (r["over"] == "problems")
                + "‡" * bool(r["mixed_builds"]) for r in g.to_dict("records")}
        lines.append(f"| {objective_label(a)} − {objective_label(b)}, Δpass@{kk} | "
                     + " | ".join(cell.get(c, "—") for c in cols) + " |")
    return "\n".join(lines)


def dynamics_markdown(dyn: pd.DataFrame, last: int = 5, spans: dict[str, float] | None = None) -> str:
    """`training_dynamics` as markdown: a row per rung x objective, a column per metric (step 1 -> last steps);
    an interval wider than the metric's possible change (`dynamics.spans`) says so instead of its ends."""
    if dyn.empty:
        return ""
    cols = [c for c in DYNAMICS if c in set(dyn["metric"])]
    lines = ["| rung | objective | seeds | " + " | ".join(DYNAMICS[c] for c in cols) + " |", "|---|---|---|" + "---|" * len(cols)]
    fmt = {"response_len_mean": ".1f"}
    for (_, rung, obj), g in dyn.groupby(["rung_order", "rung", "objective"], dropna=False):
        by = g.set_index("metric")
        cells = []
        for c in cols:
            if c not in by.index:  # a metric no run of this cell logged
                cells.append("—")
                continue
            f, e = fmt.get(c, ".3f"), by.loc[c]
            change = fmt_interval(e["delta"], e["lo"], e["hi"], f, agree=", seeds agree", span=(spans or {}).get(c))
            cells.append(f"{e['first']:{f}} → {e['last']:{f}} ({change})")
        lines.append(f"| {rung} | {obj} | {int(g['seeds'].iloc[0])} | " + " | ".join(cells) + " |")
    return (f"What training did to the policy on its own training prompts: step 1 (the rung's own rollouts) → mean of "
            f"the last {last} steps after it (change, 95% t-interval over seeds).\n\n" + "\n".join(lines) + "\n")


def dynamics_contrast_markdown(con: pd.DataFrame, metric: str = "sampled_nll", last: int = 5,
                               spans: dict[str, float] | None = None) -> str:
    """`dynamics_contrast` as markdown: a row per pair, a column per rung and the change across them (an interval
    wider than the metric's possible difference, `dynamics.spans`, says so)."""
    if con.empty:
        return ""
    cols = con[["rung_order", "rung"]].drop_duplicates().sort_values("rung_order")["rung"].tolist()
    lines = ["| contrast | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for (a, b), g in con.groupby(["a", "b"], sort=False):
        # per-prompt counts move in steps (1/80 over 5 steps x 16 prompts), so seeds can agree exactly:
        # a zero-width t-interval would claim a certainty three seeds do not give
        cell = {r["rung"]: fmt_interval(r["est"], r["lo"], r["hi"], agree=" (seeds agree)", span=(spans or {}).get(metric))
                + "‡" * bool(r["mixed_builds"])
                for r in g.to_dict("records")}
        lines.append(f"| {objective_label(a)} − {objective_label(b)} | " + " | ".join(cell.get(c, "—") for c in cols) + " |")
    mixed = f"; {MIXED_NOTE}" if con["mixed_builds"].any() else ""
    return (f"Between objectives, {DYNAMICS[metric]} over the last {last} steps (difference, 95% t-interval over "
            f"seeds, the objectives paired by seed{mixed}):\n\n" + "\n".join(lines) + "\n")


def _base_rows(floor: pd.DataFrame, rung: str, k: int) -> list[str]:
    """A rung's base rows (`noise_floor`, one per build) at pass@1 and pass@k."""
    def cell(f: pd.DataFrame) -> str:
        if f.empty:
            return "—"
        f = f.iloc[0]
        return (f"{f['base']:.3f} (SD {f['sd']:.3f}, ± {f['half_width']:.3f})" if f["evaluations"] >= 2
                else f"{f['base']:.3f} (1 evaluation)")

    rows = []
    for _, f in floor[(floor["rung"] == rung) & (floor["k"] == 1)].iterrows():
        mine = floor[(floor["rung"] == rung) & (floor["build"] == f["build"])]
        n, bad = int(f["evaluations"]), int(mine.loc[mine["k"] == k, "disagree"].sum())
        what = f"base over {n} sampling seed{'s' * (n != 1)}"
        if f["builds"] > 1:  # same recipe, other bits: each run's Δ is against its own build's base
            what += f"; build {f['build'][:8]}, cells {f['cells']}"
        if bad:
            what += f"; runs of {bad} seed{'s' * (bad != 1)} evaluated it differently (first kept)"
        rows.append(f"| {rung} | {what} | | {cell(mine[mine['k'] == 1])} | {cell(mine[mine['k'] == k])} |")
    return rows


def _delta_cell(eff: pd.DataFrame, order: float, rung: str, obj: str, k: int) -> str:
    """'+0.050 [+0.010, +0.090]' with its `OVER_MARK`; '—' where not evaluated."""
    if (order, rung, obj, k) not in eff.index:
        return "—"
    e = eff.loc[(order, rung, obj, k)]
    if e["over"] == "none":
        return f"{e['delta']:+.3f} (no samples)"
    return fmt_interval(e["delta"], e["lo"], e["hi"]) + OVER_MARK[e["over"]]
