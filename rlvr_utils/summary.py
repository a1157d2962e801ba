"""The study's findings as markdown, from the estimands (`effects`, `dynamics`, `power`): the one-sentence
answer, the per rung x objective table with each rung's base, the contrasts between objectives, what a
larger design would detect, and what training did to the policy. `rlvr report --summary` prints it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .analysis import Run, load_grid
from .costs import cell_costs, cost_markdown, cpus, design_hours, wall_hours
from .dynamics import DYNAMICS, dynamics_contrast, movement, training_dynamics
from .effects import (MIXED_NOTE, answer_k, contrast_table, default_k, effect_table, interaction, noise_floor,
                      objective_label, problem_interaction, rung_label, run_deltas, unfinished)
from .mixed import effect_table as mixed_effect_table
from .mixed import interaction as mixed_interaction
from .mixed import sizing, skill_bounds
from .power import design_table
from .stats import OVER_MARK, fmt_interval
from .tasks import is_task_spec, test_size


def report_summary(runs_dir: str | Path, k: int = 0) -> str:
    """Everything `rlvr report --summary` prints for a grid's folder, read from its run files: the primary answer
    (seeds and problems random), the per rung x objective table, how far each policy moved, then the
    secondary analyses (the same with a t over seeds, contrasts, dynamics, what a larger design detects)."""
    runs = load_grid(runs_dir)
    if not_yet := unfinished(runs, deltas := run_deltas(runs)):
        return damage_note(runs) + f"{runs_dir}: {not_yet}\n"  # damage may be why a cell is not finished
    k = answer_k(deltas, k, runs_dir)
    dyn = [dynamics_markdown(training_dynamics(runs, deltas))] + [
        dynamics_contrast_markdown(dynamics_contrast(runs, deltas, m), m) for m in ("sampled_nll", "distinct_answers")]
    moved = movement_markdown(movement(runs, deltas))
    cost = cost_markdown(costs := cell_costs(runs, deltas))
    return (damage_note(runs) + primary_markdown(deltas, k, runs=runs, costs=costs) + (f"\n{moved}" if moved else "")
            + (f"\n{cost}" if cost else "")
            + "\n## Secondary: a t over seeds (problems held fixed), contrasts, dynamics\n\n" + summary_markdown(deltas, k)
            + "".join(f"\n{d}" for d in dyn if d)
            + (f"\n---\nGenerated from the run files by `rlvr report --summary --k {k}`.\n" if k else ""))


# What the pre-registered study calls an answer of "no" (docs/prereg-family.md): an interval inside +- this
GOAL = {1: 0.02, "largest": 0.05}


def goal_for(k: int) -> float:
    return GOAL[1] if k == 1 else GOAL["largest"]


def _test_split(runs: list[Run] | None) -> int:
    """How many held-out problems the grid's generated task has (0 for a dataset or mixed data): the most a
    larger design could evaluate."""
    specs = {r.config.get("data") for r in runs or []}
    if len(specs) != 1 or not is_task_spec(spec := specs.pop() or ""):
        return 0
    return test_size(spec)


def primary_markdown(deltas: pd.DataFrame, k: int = 0, a: str = "nsr", b: str = "psr",
                     runs: list[Run] | None = None, costs: pd.DataFrame | None = None) -> str:
    """The primary answer at pass@1 and at the largest pass@k, one sentence each (yes / no / inconclusive, the
    estimate, its interval with seeds and problems random, the MDE with its interval), then per rung x
    objective the change with the same intervals, then what more seeds would detect (and, given the `runs`,
    cost); '' where the grid cannot give it (one seed, one rung)."""
    if deltas.empty:
        return ""
    k = k or default_k(deltas)
    lines, its = [], []
    for kk in sorted({1, k}):
        try:
            its.append(mixed_interaction(deltas, kk, a, b))
        except (KeyError, ValueError) as e:
            lines.append(f"No primary answer at pass@{kk} with seeds and problems random: {e.args[0] if e.args else e}.")
            continue
        lines.append(primary_sentence(its[-1], goal_for(kk)))
    table = mixed_table_markdown(deltas, k)
    costs = costs if costs is not None else cell_costs(runs, deltas) if runs else None  # the runs' costs, once
    extra = (skill_markdown(deltas, k, its[0]["rungs"], a, b) + sizing_markdown(its, costs, _test_split(runs))
             if its else "")
    return "\n\n".join(f"**{x}**" for x in lines) + "\n\n" + (table + "\n" if table else "") + extra


SIZING_SEEDS = (5, 10, 20, 30, 50, 100)


def sizing_markdown(its: list[dict], costs: pd.DataFrame | None = None, more_problems: int = 0) -> str:
    """What more seeds would detect for the primary outcomes (`mixed.interaction` results; `mixed.sizing`), each
    design's hours (`costs`), and the same on `more_problems`; '' where no outcome has a positive variance."""
    ok = [it for it in its if it["c"].se == it["c"].se]
    if not ok:
        return ""
    P = ok[0]["c"].problems
    sizes = [P] + ([more_problems] if more_problems > P else [])
    seeds = tuple(sorted({ok[0]["c"].seeds, *SIZING_SEEDS}))
    rows = {(it["k"], p): sizing(it["c"], seeds, p).set_index("seeds") for p in sizes for it in ok}
    timed = costs is not None and not costs.empty
    # cells run side by side (`--jobs`): wall clock per cell-hour as this grid measured it
    pace = wall_hours(costs) / (costs["seconds"].sum() / 3600) if timed else 0.0
    head = ["seeds"]
    for p in sizes:
        head += [f"MDE at pass@{kk}, {p} problems (goal {goal_for(kk):g})" for kk in (it["k"] for it in ok)]
        head += [f"hours, {p} problems"] if timed else []
    cell = lambda r, S: "—" if r.loc[S, "mde"] != r.loc[S, "mde"] else \
        f"{r.loc[S, 'mde']:.3f} [{r.loc[S, 'mde_lo']:.3f}, {r.loc[S, 'mde_hi']:.3f}]"  # noqa: E731
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for S in seeds:
        out = [str(S)]
        for p in sizes:
            out += [cell(rows[(it["k"], p)], S) for it in ok]
            out += [f"{design_hours(costs, S, p) * pace:.1f}"] if timed else []
        lines.append("| " + " | ".join(out) + " |")
    more = (f", and on {more_problems} (every problem of the task's test split; a new design, since the grid's "
            f"cells were evaluated on {P})" if len(sizes) > 1 else "")
    cost = (f" Hours: wall clock of the whole design on {cpus(costs)}, from this grid's "
            f"median cell per rung and seed (evaluation scaled by the problems) at its measured pace of "
            f"{1 / pace:.2f} cells side by side (`costs.design_hours`)." if timed else "")
    return ("\nWhat the primary outcomes would detect (80% power, 95% level) with more seeds, projected from this "
            "grid's variance components with seeds and problems random (`mixed.sizing`; the interval is the "
            "components' own uncertainty; — where a negative component estimate, used as it is, leaves no positive "
            f"variance, or a negative expected mean square, at that size): on the same {P} problems{more}.{cost}\n\n"
            + "\n".join(lines) + "\n")


def skill_markdown(deltas: pd.DataFrame, k: int, compute_ends: tuple[float, float], a: str = "nsr",
                   b: str = "psr") -> str:
    """Secondary (docs/prereg-family.md): the same difference in differences between the rungs whose bases are
    the least and the most skilled, where those are not the compute axis's ends; '' otherwise."""
    try:
        ends = skill_bounds(deltas)
        if ends == tuple(compute_ends):
            return ""
        its = [mixed_interaction(deltas, kk, a, b, rungs=ends) for kk in sorted({1, k})]
    except (KeyError, ValueError):
        return ""
    lines = [primary_sentence(it, goal_for(it["k"])) for it in its]
    return ("Secondary, along skill (the rungs whose bases sample the lowest and highest pass@1, not the compute "
            "axis's ends):\n\n" + "\n\n".join(f"- {x}" for x in lines) + "\n")


def primary_sentence(it: dict, goal: float) -> str:
    """'yes' if the interval excludes 0, 'no' if it lies within +-goal, else 'inconclusive'; with what it is over."""
    c, (lo_r, hi_r), (a, b) = it["c"], it["labels"], it["objectives"]
    a, b = objective_label(a), objective_label(b)
    if c.se != c.se:  # no positive variance estimate: no interval
        verdict = "inconclusive (the variance of the estimate is not estimable)"
    elif c.lo > 0 or c.hi < 0:
        verdict = f"yes: {a}'s advantage over {b} {'grows' if c.est > 0 else 'shrinks'} with the prior"
    elif -goal <= c.lo and c.hi <= goal:
        verdict = f"no: any change in {a}'s advantage over {b} with the prior is within ±{goal:g}"
    else:
        verdict = f"inconclusive: the interval neither excludes 0 nor lies within ±{goal:g}"
    m_lo, m_hi = it["mde_interval"]
    design = f"rung {lo_r} vs {hi_r}; {c.seeds} seeds x {c.problems} problems"
    if c.se != c.se:
        return (f"Pass@{it['k']}: {verdict}. Difference in differences {c.est:+.3f} ({design}): no interval and no "
                "minimum detectable effect, since the variance estimate (MS_seed + MS_problem − MS_resid) is not "
                "positive.")
    return (f"Pass@{it['k']}: {verdict}. Difference in differences {fmt_interval(c.est, c.lo, c.hi)} ({design}; "
            f"95% interval with seeds and problems both random, {c.df:.1f} degrees of freedom); the smallest effect "
            f"this design detects with 80% power is {it['mde']:.3f} [{m_lo:.3f}, {m_hi:.3f}].")


def mixed_table_markdown(deltas: pd.DataFrame, k: int) -> str:
    """Per rung x objective: Δpass@1 and Δpass@k with seeds and problems random, the t over seeds beside it."""
    mixed = mixed_effect_table(deltas, tuple(sorted({1, k})))
    if mixed.empty:
        return ""
    per_seed = effect_table(deltas[deltas["k"].isin([1, k])]).set_index(["rung", "objective", "k"])
    rows = [f"| rung | objective | seeds × problems | Δpass@1 | Δpass@1, t over seeds | Δpass@{k} | Δpass@{k}, t over seeds |",
            "|---|---|---|---|---|---|---|"]
    m = mixed.set_index(["rung", "objective", "k"])
    for (_, rung, obj), _ in mixed.groupby(["rung_order", "rung", "objective"], dropna=False):
        cells = []
        for kk in (1, k):
            e, s = m.loc[(rung, obj, kk)], per_seed.loc[(rung, obj, kk)]
            cells += [_crossed_cell(e),
                      fmt_interval(s["delta"], s["lo"], s["hi"]) + OVER_MARK.get(s["over"], "")]
        size = m.loc[(rung, obj, 1)]
        rows.append(f"| {rung} | {obj} | {int(size['seeds'])} × {int(size['problems'])} | " + " | ".join(cells) + " |")
    marks = "; * a cell of one seed, † one whose seeds agree: there a bootstrap over problems" * any(
        mk in r for r in rows[2:] for mk in "*†")
    return ("Per rung and objective, each run's change against its own base (95% intervals: seeds and problems "
            f"random; beside it, a t over seeds with the problems held fixed{marks}):\n\n" + "\n".join(rows) + "\n")


def _crossed_cell(e) -> str:
    """A crossed mean with its interval, or why it has none: one seed, no positive variance estimate (nothing is
    floored), or an interval wider than Δpass@k's whole range [-1, 1] (two seeds can give Satterthwaite df ~0.01,
    and a t quantile beyond any bound), which says nothing."""
    if e["seeds"] == 1:
        return f"{e['est']:+.3f} (one seed)"
    if e["se"] != e["se"]:
        return f"{e['est']:+.3f} (no positive variance estimate)"
    if e["hi"] - e["lo"] > 2:
        return f"{e['est']:+.3f} (interval wider than [-1, 1]: df {e['df']:.2f})"
    return fmt_interval(e["est"], e["lo"], e["hi"])


def damage_note(runs: list[Run]) -> str:
    """A warning naming the runs whose files could not be read whole (torn or missing records); '' if none."""
    bad = [f"{r.name} ({'; '.join(r.problems)})" for r in runs if r.problems]
    return (f"**Not read whole: {', '.join(bad)}.** Their rows past the damage are left out; `rlvr train --run-dir "
            "<run> --resume` repairs a torn line and redoes its step.\n\n") if bad else ""


def answer(deltas: pd.DataFrame, k: int) -> str:
    """The study's answer in one sentence, with the interaction's CI and the minimum detectable effect.
    Over seeds (t) when every cell has >= 2 seeds; otherwise over problems (bootstrap), and it says so."""
    try:
        it = interaction(deltas, k)
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
        verdict = f"{a}'s advantage over {b} at pass@{k} {'grows' if it['did'] > 0 else 'shrinks'} with the prior"
    else:
        verdict = f"no detectable change in {a}'s advantage over {b} at pass@{k} with the prior"
    return (f"{verdict}: difference in differences {fmt_interval(it['did'], it['lo'], it['hi'])} ({over}, "
            f"rung {rung_label(deltas, it['rungs'][0])} vs {rung_label(deltas, it['rungs'][1])}); the smallest effect "
            f"this design detects with 80% power is {it['mde_80']:.3f}.")


def headline(deltas: pd.DataFrame, k: int = 0) -> str:
    """The report's first line: `answer` at pass@k (k=0: `effects.default_k`), or why this grid
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


def summary_markdown(deltas: pd.DataFrame, k: int = 0) -> str:
    """The study's headline as markdown: the answer, then per rung x objective the change in pass@1 and
    pass@k with 95% CIs (t over seeds where a cell has >= 2, else bootstrap over problems within its
    one run), and each rung's base with its noise floor."""
    if deltas.empty:
        return headline(deltas, k)
    k = k or default_k(deltas)
    eff = effect_table(deltas[deltas["k"].isin([1, k])]).set_index(["rung_order", "rung", "objective", "k"])
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
    out = f"**{headline(deltas, k)}**\n\n" + "\n".join(rows) + f"\n\n{note}\n"
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
    return out + (f"\nWhat a larger design would detect at pass@{k} (80% power, 95% level), projected from this "
                  "grid's variance components: on each rung, the spread of the per-seed contrast split into the "
                  "training runs' own part and a seed × problem part that more evaluation problems average out "
                  f"(`effects.variance_components`).\n\n{design}\n")


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


def movement_markdown(mov: pd.DataFrame, last: int = 5) -> str:
    """`dynamics.movement` as markdown: did training change the model, and by how much, per rung x objective."""
    if mov.empty or mov["kl_to_init"].isna().all() and mov["ratio"].isna().all():
        return ""
    lines = ["| rung | objective | seeds | KL(π_t ‖ π_0) per token, last steps | samples trained | tokens trained | "
             "per-problem change of pass@1 (RMS) | re-sampling noise (RMS) | change / noise |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in mov.sort_values(["rung_order", "objective"]).to_dict("records"):
        kl = "—" if pd.isna(r["kl_to_init"]) else (f"{r['kl_to_init']:.4f}" + (
            "" if pd.isna(r["kl_hi"]) else f" [{r['kl_lo']:.4f}, {r['kl_hi']:.4f}]"))
        ratio = "—" if pd.isna(r["ratio"]) else f"{r['ratio']:.2f}"
        lines.append(f"| {r['rung']} | {r['objective']} | {r['seeds']} | {kl} | {r['samples_trained']:.0f} | "
                     f"{r['tokens_trained']:.0f} | {r['change_rms']:.3f} | {r['noise_rms']:.3f} | {ratio} |")
    return (f"How far training moved each policy (means over seeds; the KL's 95% t-interval over seeds): the KL to the "
            f"initial policy on the samples of the last {last} steps, what it trained on, and per held-out problem the "
            "RMS change of sampled pass@1 against the RMS difference between two evaluations of the base with different "
            "sampling seeds. A run's base and final evaluations share their sampling seeds, so a ratio above 1 is "
            "movement beyond re-sampling noise.\n\n" + "\n".join(lines) + "\n")


def dynamics_markdown(dyn: pd.DataFrame, last: int = 5) -> str:
    """`training_dynamics` as markdown: a row per rung x objective, a column per metric (step 1 -> last steps)."""
    if dyn.empty:
        return ""
    cols = [c for c in DYNAMICS if c in set(dyn["metric"])]
    lines = ["| rung | objective | seeds | " + " | ".join(DYNAMICS[c] for c in cols) + " |", "|---|---|---|" + "---|" * len(cols)]
    fmt = {"response_len_mean": ".1f"}
    for (_, rung, obj), g in dyn.groupby(["rung_order", "rung", "objective"], dropna=False):
        by = g.set_index("metric")
        cells = []
        for c in cols:
            if c not in by.index:  # e.g. runs that predate the metric
                cells.append("—")
                continue
            f, e = fmt.get(c, ".3f"), by.loc[c]
            change = fmt_interval(e["delta"], e["lo"], e["hi"], f, agree=", seeds agree")
            cells.append(f"{e['first']:{f}} → {e['last']:{f}} ({change})")
        lines.append(f"| {rung} | {obj} | {int(g['seeds'].iloc[0])} | " + " | ".join(cells) + " |")
    return (f"What training did to the policy on its own training prompts: step 1 (the rung's own rollouts) → mean of "
            f"the last {last} steps after it (change, 95% t-interval over seeds).\n\n" + "\n".join(lines) + "\n")


def dynamics_contrast_markdown(con: pd.DataFrame, metric: str = "sampled_nll", last: int = 5) -> str:
    """`dynamics_contrast` as markdown: a row per pair, a column per rung and the change across them."""
    if con.empty:
        return ""
    cols = con[["rung_order", "rung"]].drop_duplicates().sort_values("rung_order")["rung"].tolist()
    lines = ["| contrast | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for (a, b), g in con.groupby(["a", "b"], sort=False):
        # per-prompt counts move in steps (1/80 over 5 steps x 16 prompts), so seeds can agree exactly:
        # a zero-width t-interval would claim a certainty three seeds do not give
        cell = {r["rung"]: fmt_interval(r["est"], r["lo"], r["hi"], agree=" (seeds agree)") + "‡" * bool(r["mixed_builds"])
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
