"""The study's report as markdown, from the estimands (`crossed`, `dynamics`, `costs`): the primary answer in a
sentence per outcome, the per rung x objective table, how far training moved each policy, what the design
detects and what more would take, then the secondary analyses (`secondary`). `rlvr report --summary` prints it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .frames import Run, load_grid
from .costs import cell_costs, cost_markdown, cpus, design_hours, wall_hours
from .dynamics import dynamics_contrast, movement, spans, training_dynamics
from .perseed import (answer_k, change_phrase, default_k, ends_phrase, objective_label,
                      perseed_effect_table, run_deltas, unfinished)
from .crossed import DID_SPAN, crossed_effect_table, crossed_interaction, goal_for, seeds_for, sizing, skill_bounds
from .secondary import dynamics_contrast_markdown, dynamics_markdown, summary_markdown
from ..core.stats import OVER_MARK, fmt_interval
from ..data.tasks import is_task_spec, test_size


def report_summary(runs_dir: str | Path, k: int = 0, figure: str | Path | None = None) -> str:
    """Everything `rlvr report --summary` prints for a grid's folder, read from its run files, in the order the
    pre-registration reads it: the primary answer (seeds and problems random), the per rung x objective table,
    how far each policy moved, the secondary outcomes (entropy, distinct answers, length), what the design can
    detect and what it cost, then the secondary analyses (along skill, a t over seeds, contrasts)."""
    runs = load_grid(runs_dir)
    if not_yet := unfinished(runs, deltas := run_deltas(runs)):  # as the HTML report: an error, nothing to report
        bad = [r for r in runs if r.problems]  # damage may be why
        raise ValueError(f"{runs_dir}: {not_yet}" + (": no figure to draw" if figure else "")
                         + (f"; not read whole: {damaged(bad)}; {damage_fix(bad)}" if bad else ""))
    k = answer_k(deltas, k, runs_dir)
    its, sentences = primary_answers(deltas, k)
    if figure:  # from the same run files, read once
        from .frontpage import figure_title, identity

        study_figure(deltas, figure, k, its, figure_title(identity(runs, deltas, runs_dir), its))
    dyn = outcome_markdowns(runs, deltas)
    moved = movement_markdown(movement(runs, deltas))
    outcomes = "".join(f"\n{d}" for d in dyn if d)
    design = design_markdown(deltas, k, runs, cell_costs(runs, deltas), its)
    skill = skill_markdown(deltas, k, its[0]["rungs"]) if its else ""
    return (damage_note(runs) + left_out_note(runs, deltas) + sentences + mixed_table_markdown(deltas, k)
            + (f"\n{moved}" if moved else "")
            + (f"\n## Secondary outcomes: entropy, distinct answers, length\n{outcomes}" if outcomes else "")
            + (f"\n## What this design detects, what more would take, what it cost\n\n{design}" if design else "")
            + "\n## Secondary analyses: along skill, a t over seeds (problems held fixed), contrasts\n\n"
            + (f"{skill}\n" if skill else "") + summary_markdown(deltas, k, secondary=True)
            + (f"\n---\nGenerated from the run files by `rlvr report --summary --k {k}`.\n" if k else ""))


def outcome_markdowns(runs: list[Run], deltas: pd.DataFrame) -> list[str]:
    """The secondary outcomes: what training did on the training prompts, then each metric's contrasts."""
    span = spans(runs)
    return [dynamics_markdown(training_dynamics(runs, deltas), spans=span)] + [
        dynamics_contrast_markdown(dynamics_contrast(runs, deltas, m), m, spans=span)
        for m in ("sampled_nll", "distinct_answers", "response_len_mean")]


def _test_split(runs: list[Run] | None) -> int:
    """How many held-out problems the grid's generated task has (0 for a dataset or mixed data): the most a
    larger design could evaluate."""
    specs = {r.config.get("data") for r in runs or []}
    if len(specs) != 1 or not is_task_spec(spec := specs.pop() or ""):
        return 0
    return test_size(spec)


def primary_answers(deltas: pd.DataFrame, k: int = 0, a: str = "nsr", b: str = "psr") -> tuple[list[dict], str]:
    """The primary outcomes at pass@1 and at the largest pass@k (`crossed_interaction`, seeds and problems random),
    and their answers as markdown, one bold sentence each (or why the grid cannot give one)."""
    if deltas.empty:
        return [], ""
    k = k or default_k(deltas)
    lines, its = [], []
    for kk in sorted({1, k}):
        try:
            its.append(crossed_interaction(deltas, kk, a, b))
        except (KeyError, ValueError) as e:
            lines.append(f"No primary answer at pass@{kk} with seeds and problems random: {e.args[0] if e.args else e}.")
            continue
        lines.append(primary_sentence(its[-1], goal_for(kk)))
    return its, "\n\n".join(f"**{x}**" for x in lines) + "\n\n"


def primary_markdown(deltas: pd.DataFrame, k: int = 0, a: str = "nsr", b: str = "psr") -> str:
    """The primary answers (`primary_answers`), then per rung x objective the change with the same intervals."""
    if deltas.empty:
        return ""
    k = k or default_k(deltas)
    table = mixed_table_markdown(deltas, k)
    return primary_answers(deltas, k, a, b)[1] + (table + "\n" if table else "")


def design_markdown(deltas: pd.DataFrame, k: int = 0, runs: list[Run] | None = None, costs: pd.DataFrame | None = None,
                    its: list[dict] | None = None) -> str:
    """What the design can detect: the primary outcomes' variance components, what more seeds (and, for a
    generated task, more problems) would detect and cost, then what the grid's cells cost (given the `runs`)."""
    if deltas.empty:
        return ""
    its = its if its is not None else primary_answers(deltas, k)[0]
    costs = costs if costs is not None else cell_costs(runs, deltas) if runs else None
    cost = cost_markdown(costs) if costs is not None else ""
    return components_markdown(its) + sizing_markdown(its, costs, _test_split(runs)) + (f"\n{cost}" if cost else "")


def components_markdown(its: list[dict]) -> str:
    """The primary outcomes' variance components as estimated (a negative one is shown, never floored), with the
    standard error, Satterthwaite df and MDE they give (`crossed.crossed_mean`)."""
    if not its:
        return ""
    rows = ["| outcome | seeds × problems | var_seed | var_problem | var_resid | se | Satterthwaite df | MDE (80%) |",
            "|---|---|---|---|---|---|---|---|"]
    for it in its:
        c, (lo, hi) = it["c"], it["mde_interval"]
        mde_ = "—" if it["mde"] != it["mde"] else f"{it['mde']:.3f} [{lo:.3f}, {hi:.3f}]"
        f = lambda x, spec: "—" if x != x else f"{x:{spec}}"  # noqa: E731  (no variance estimate: no se, no df)
        rows.append(f"| pass@{it['k']} | {c.seeds} × {c.problems} | {f(c.var_seed, '.2e')} | {f(c.var_problem, '.2e')} | "
                    f"{f(c.var_resid, '.2e')} | {f(c.se, '.4f')} | {f(c.df, '.1f')} | {mde_} |")
    return ("The primary outcomes' variance components (the difference in differences per seed and problem; "
            "seeds and problems random, every estimate as it came, a negative one included): var_seed is what a "
            "seed's training runs do to every problem alike, var_problem the problems that move more than others "
            "whatever the seed, var_resid seed × problem and the evaluation's sampling noise.\n\n"
            + "\n".join(rows) + "\n")


SIZING_SEEDS = (5, 10, 20, 30, 50, 100)


def sizing_markdown(its: list[dict], costs: pd.DataFrame | None = None, more_problems: int = 0) -> str:
    """What more seeds would detect for the primary outcomes (`crossed_interaction` results; `crossed.sizing`), each
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
    needs = []
    per_seed = int(costs.groupby("seed").size().max()) if timed else 0  # cells a seed adds: its fullest seed's
    for it in ok:
        goal, reach, miss = goal_for(it["k"]), [], []
        for p in sizes:
            if not (S := seeds_for(it["c"], goal, p)):
                miss.append(str(p))
                continue
            reach.append(f"{S} seeds on {p} problems" + (f" ({S * per_seed} cells, {design_hours(costs, S, p) * pace:.0f} h)"
                                                          if timed else ""))
        needs.append(f"pass@{it['k']} ≤ {goal:g} " + (f"needs {' or '.join(reach)}" if reach else "")
                     + ("; " if reach and miss else "")
                     + (f"is out of reach on {' or '.join(miss)} problems at any number of seeds up to 10,000 (or "
                        "there is no positive variance to project)" if miss else ""))
    need = "The goals, projected from the same components: " + "; ".join(needs) + ".\n"
    return ("\nWhat the primary outcomes would detect (80% power, 95% level) with more seeds, projected from this "
            "grid's variance components with seeds and problems random (`crossed.sizing`; the interval is the "
            "components' own uncertainty; — where a negative component estimate, used as it is, leaves no positive "
            f"variance, or a negative expected mean square, at that size): on the same {P} problems{more}.{cost}\n\n"
            + "\n".join(lines) + "\n\n" + need)


def skill_markdown(deltas: pd.DataFrame, k: int, compute_ends: tuple[float, float] | None = None, a: str = "nsr",
                   b: str = "psr") -> str:
    """Secondary (docs/prereg-family.md): the same difference in differences between the rungs whose bases are
    the least and the most skilled, where those are not the compute axis's ends (the primary's; found when not
    given); '' otherwise."""
    try:
        ends = skill_bounds(deltas)
        if ends == tuple(compute_ends or crossed_interaction(deltas, 1, a, b)["rungs"]):
            return ""
        its = [crossed_interaction(deltas, kk, a, b, rungs=ends) for kk in sorted({1, k})]
    except (KeyError, ValueError):
        return ""
    lines = [primary_sentence(it, goal_for(it["k"])) for it in its]
    return ("Along skill (the rungs whose bases sample the lowest and highest pass@1, not the compute "
            "axis's ends):\n\n" + "\n\n".join(f"- {x}" for x in lines) + "\n")


def primary_sentence(it: dict, goal: float) -> str:
    """'yes' if the interval excludes 0, 'no' if it lies within +-goal, else 'inconclusive' (docs/prereg-family.md);
    which objective leads on each end rung, what the estimate is over, its MDE and whether that meets the goal."""
    c, (lo_r, hi_r), (a, b) = it["c"], it["labels"], it["objectives"]
    a, b = objective_label(a), objective_label(b)
    where = (f"rung {lo_r}", hi_r)
    ends = ends_phrase(a, b, it["ends"], where)
    if c.se != c.se:  # no positive variance estimate: no interval
        verdict = f"inconclusive (the variance of the estimate is not estimable; {ends})"
    elif c.lo > 0 or c.hi < 0:
        verdict = f"yes: {change_phrase(a, b, it['ends'], where=where)}"
    elif -goal <= c.lo and c.hi <= goal:
        verdict = f"no: any change in {a} − {b} with the prior is within ±{goal:g} ({ends})"
    else:
        verdict = f"inconclusive: the interval neither excludes 0 nor lies within ±{goal:g} ({ends})"
    m_lo, m_hi = it["mde_interval"]
    design = f"rung {lo_r} vs {hi_r}; {c.seeds} seeds run on both x {c.problems} problems"
    if c.se != c.se:
        return (f"Pass@{it['k']}: {verdict}. Difference in differences {c.est:+.3f} ({design}): no interval and no "
                "minimum detectable effect, since the variance estimate (MS_seed + MS_problem − MS_resid) is not "
                "positive.")
    met = ("reached" if m_hi <= goal else "reached by the estimate, not across its interval" if it["mde"] <= goal
           else "not reached")
    # a difference in differences of pass@k lies in [-2, 2] (per seed Δa − Δb = final_a − final_b): an interval or
    # an MDE past that says nothing at this n, and its numbers would only mislead
    mde_ = (f"{it['mde']:.3f} [{m_lo:.3f}, {m_hi:.3f}]" if it["mde"] <= DID_SPAN / 2
            else "larger than any possible change (the difference in differences lies in [-2, 2])")
    return (f"Pass@{it['k']}: {verdict}. Difference in differences {fmt_interval(c.est, c.lo, c.hi, span=DID_SPAN)} "
            f"({design}; 95% interval with seeds and problems both random, {c.df:.1f} degrees of freedom); the smallest "
            f"effect this design detects with 80% power is {mde_} (goal ≤ {goal:g}: {met}).")


def mixed_table_markdown(deltas: pd.DataFrame, k: int) -> str:
    """Per rung x objective: Δpass@1 and Δpass@k with seeds and problems random, the t over seeds beside it."""
    mixed = crossed_effect_table(deltas, tuple(sorted({1, k})))
    if mixed.empty or mixed["why"].all():  # no cell has an estimate: the primary answer already says why
        return ""
    per_seed = perseed_effect_table(deltas[deltas["k"].isin([1, k])]).set_index(["rung", "objective", "k"])
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
    if e.get("why"):
        return f"— ({e['why']})"
    if e["seeds"] == 1:
        return f"{e['est']:+.3f} (one seed)"
    if e["se"] != e["se"]:
        return f"{e['est']:+.3f} (no positive variance estimate)"
    if e["hi"] - e["lo"] > 2:
        return f"{e['est']:+.3f} (interval wider than [-1, 1]: df {e['df']:.2f})"
    return fmt_interval(e["est"], e["lo"], e["hi"])


def study_figure(deltas: pd.DataFrame, out: str | Path, k: int, its: list[dict] | None = None, title: str = "") -> Path:
    """The study in one figure (`studyfig.plot_study_full`: the answer as its title, Δpass@1 and Δpass@k per rung,
    NSR − PSR with the pre-registered ends marked, pass@k against k per rung) from a grid's `run_deltas`, written
    atomically to the PNG `out`."""
    import matplotlib.pyplot as plt  # matplotlib only when a figure is asked for

    from .passk import contrast_frame, passk_frame
    from .studyfig import plot_study_full

    ks = tuple(sorted({1, k}))
    its = its if its is not None else primary_answers(deltas, k)[0]
    base = deltas[deltas["k"] == 1].groupby("rung")["base"].mean()
    pk = passk_frame(deltas, tuple(kk for kk in sorted(deltas["k"].unique()) if kk <= k))
    ends = tuple(its[0]["labels"]) if its else None
    fig = plot_study_full(pk, contrast_frame(deltas, ks), base, ks, ends, title or "the study")
    out = Path(out)
    part = out.with_name(out.name + ".partial.png")
    fig.savefig(part, dpi=110)
    plt.close(fig)
    return part.replace(out)


def damage_note(runs: list[Run]) -> str:
    """A warning naming the runs whose files could not be read whole (torn or missing records), and what repairs
    them; '' if none."""
    bad = [r for r in runs if r.problems]
    if not bad:
        return ""
    return f"**Not read whole: {damaged(bad)}.** Their rows past the damage are left out; {damage_fix(bad)}.\n\n"


def damaged(bad: list[Run]) -> str:
    return ", ".join(f"{r.name} ({'; '.join(r.problems)})" for r in bad)


def damage_fix(bad: list[Run]) -> str:
    """What repairs damaged runs: a resume for a run not finished, a fresh run for a finished one (it keeps no
    checkpoint to redo a step from, and a resume refuses it)."""
    done = [r.name for r in bad if r.status.get("state") == "done"]
    fix = ("`rlvr train --run-dir <run> --resume` repairs a torn line of a run not finished and redoes its step"
           if len(done) < len(bad) else "")
    if done:
        fix += ("; " if fix else "") + (f"{', '.join(done)} finished and kept no checkpoint to redo a step from: delete "
                                        "its folder and run the grid again, which runs it afresh")
    return fix


def left_out_note(runs: list[Run], deltas: pd.DataFrame) -> str:
    """A note naming the grid's cells the report leaves out because they have not finished (under way,
    interrupted, failed, not started); '' when every cell is in."""
    counted = set(deltas["run"]) if not deltas.empty else set()
    left = [f"{r.name} ({r.status.get('state', 'pending')})" for r in runs if r.name not in counted]
    return (f"**Left out, not finished: {', '.join(left)}.** What follows is read from the {len(counted)} finished "
            "cells only; run the grid to finish the others.\n\n") if left else ""


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
        ratio = "—" if pd.isna(r["ratio"]) else f"{r['ratio']:.2f}" + (
            "" if pd.isna(r["ratio_hi"]) else f" [{r['ratio_lo']:.2f}, {r['ratio_hi']:.2f}]")
        lines.append(f"| {r['rung']} | {r['objective']} | {r['seeds']} | {kl} | {r['samples_trained']:.0f} | "
                     f"{r['tokens_trained']:.0f} | {r['change_rms']:.3f} | {r['noise_rms']:.3f} | {ratio} |")
    return (f"How far training moved each policy (means over seeds; the KL's 95% t-interval over seeds): the KL to the "
            f"initial policy on the samples of the last {last} steps (the k3 estimator, per response token), what it "
            "trained on in all its steps (samples trained: rollouts with a nonzero weight in the loss, so PSR counts "
            "its correct samples, NSR its incorrect ones, W-REINFORCE and REINFORCE all; tokens: their response "
            "tokens), and per held-out problem the "
            "RMS change of sampled pass@1 against the RMS difference between two evaluations of the base with different "
            "sampling seeds (the ratio per seed, its mean with a 95% t-interval over seeds). A run's base and final "
            "evaluations share their sampling seeds, so a ratio above 1 is movement beyond re-sampling noise.\n\n"
            + "\n".join(lines) + "\n")
