"""The prior study's estimands: each objective's change against its rung's own base, the noise floor, the
contrasts between objectives, and the interaction (does NSR's edge over PSR grow or shrink with the prior?).

Pure functions from run files (`frames.load_grid`). Every interval says over what it was formed
(`stats.seeds_else_problems`): across seeds (t-based, the primary one) or over problems (a paired
bootstrap within runs). A rung is the model a run started from (`recipes.rung_of`).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from .frames import Run, eval_counts
from ..core.objectives import OBJECTIVES
from ..core.runs import RESUMABLE
from ..priors.recipes import rung_of
from ..core.stats import NO_WIDTH, bootstrap_ci, pass_at_k, reported_k, seed_ci, seeds_else_problems, welch


def objective_label(objective: str) -> str:
    """An objective's name as the paper writes it: w_reinforce -> W-REINFORCE; an arm keeps its knobs
    (w_reinforce[lam=0.5] -> W-REINFORCE[lam=0.5])."""
    name, bracket, knobs = objective.partition("[")
    return name.upper().replace("_", "-") + bracket + knobs


def run_deltas(runs: list[Run]) -> pd.DataFrame:
    """One row per run and k: pass@k at step 0 (the base) and at the last evaluation, and the change. A run still
    under way (or failed) is left out, even past its last evaluation: a study commits finished cells only, and its
    report must read the same from a clone."""
    rows = []
    for r in runs:
        ev = r.evals
        if ev.empty or 0 not in set(ev["step"]) or ev["step"].max() == 0 or r.status.get("state") in RESUMABLE:
            continue
        order, label = rung_of(r.config)
        base, last = ev[ev["step"] == 0].iloc[0], ev.loc[ev["step"].idxmax()]
        for col in (c for c in ev.columns if c.startswith("pass@") and "_" not in c):
            rows.append({"rung": label, "rung_order": order, "objective": r.objective,
                         "seed": r.config.get("seed"), "run": r.name, "path": str(r.path), "k": int(col.split("@")[1]),
                         "weights": r.weights, "n": r.config.get("eval_samples"),
                         "base": float(base[col]), "final": float(last[col]), "delta": float(last[col] - base[col])})
    return pd.DataFrame(rows)


def unfinished(runs: list[Run], deltas: pd.DataFrame) -> str:
    """'' once a cell has finished (it has rows in `run_deltas`); else the one line a report gives instead of
    tables with nothing to compare: no finished cell yet, and how many are under way (or failed)."""
    if not deltas.empty:
        return ""
    failed = sum(r.status.get("state") == "failed" for r in runs)
    stopped = sum(r.status.get("state") == "interrupted" for r in runs)
    return (f"no finished cells yet ({len(runs) - failed - stopped} under way" + (f", {stopped} interrupted" if stopped
            else "") + (f", {failed} failed" if failed else "") + ")" if runs else "no runs yet")


def default_k(deltas: pd.DataFrame) -> int:
    """The largest k a report answers at by default (`stats.reported_k` of the evaluated ks and samples); 0 before
    any run has finished."""
    if deltas.empty:
        return 0
    n = pd.to_numeric(deltas.get("n"), errors="coerce").min() if "n" in deltas else float("nan")
    return reported_k(deltas["k"].unique(), n)


def answer_k(deltas: pd.DataFrame, k: int, where: object = "the grid") -> int:
    """The k a report answers at: `k`, or `default_k` for 0; an error naming the evaluated ks for any other."""
    k = k or default_k(deltas)
    if not deltas.empty and k not in set(deltas["k"]):
        raise ValueError(f"--k {k}: {where} was evaluated at k = {', '.join(map(str, sorted(set(deltas['k']))))}")
    return k


def perseed_effect_table(deltas: pd.DataFrame) -> pd.DataFrame:
    """Per rung x objective x k: mean change with its 95% interval, `over` saying which
    (`stats.seeds_else_problems`: t over seeds, else a bootstrap over problems with the seeds averaged per
    problem, else "none" where the runs kept no per-sample records)."""
    rows = []
    for (order, rung, obj, k), g in deltas.groupby(["rung_order", "rung", "objective", "k"], dropna=False):
        paths = g["path"].unique()
        iv = seeds_else_problems(g["delta"].to_numpy(), lambda: _mean_problem_deltas(paths, int(k)).dropna())  # noqa: B023
        rows.append({"rung": rung, "rung_order": order, "objective": obj, "k": k, "delta": iv.est, "lo": iv.lo,
                     "hi": iv.hi, "seeds": len(g), "over": iv.over})
    return pd.DataFrame(rows)


def noise_floor(deltas: pd.DataFrame) -> pd.DataFrame:
    """Per rung x build x k: the base's pass@k across sampling seeds: mean, SD and the 95% t half-width. A
    change smaller than this is not a change. Runs of one seed evaluate (or share) the same base
    evaluation, so each seed counts once: counting runs would shrink the interval by sqrt(objectives)."""
    # A rung rebuilt on another CPU (same recipe, other bits: `weights`) has a base per build, and its runs'
    # Δs are each against their own: one row per build, the most used first, naming whose cells ran on it.
    # Runs saved before the fingerprint key count with the rung's most used build. Same-build runs of one
    # seed whose step-0 evaluations differ (another precision or CPU kind) did not reproduce their base:
    # the floor keeps the first, and `disagree` counts such seeds.
    rows = []
    for (order, rung, k), g in deltas.groupby(["rung_order", "rung", "k"], dropna=False):
        build = g["weights"].fillna("")
        counts = build[build != ""].value_counts(sort=False).sort_values(ascending=False, kind="stable")  # ties: first seen
        build = build.replace("", counts.index[0] if len(counts) else "")
        for w in counts.index if len(counts) else [""]:
            b = g[build == w]
            spread = b.groupby("seed", dropna=False)["base"].agg(lambda x: x.max() - x.min())
            base = b.drop_duplicates("seed")["base"]
            m, lo, hi = seed_ci(base)
            cells = "; ".join(f"{o} s{','.join(str(s) for s in sorted(o_runs['seed'].unique()))}"
                              for o, o_runs in b.groupby("objective"))
            rows.append({"rung": rung, "rung_order": order, "k": k, "build": w, "builds": max(1, len(counts)),
                         "cells": cells, "base": m, "sd": float(base.std(ddof=1)), "half_width": hi - m,
                         "evaluations": len(base), "disagree": int((spread > NO_WIDTH).sum())})
    return pd.DataFrame(rows)


def _rung_bounds(deltas: pd.DataFrame) -> tuple[float, float]:
    """The lowest and highest rung with an order (a warm start's dose; a named model has none)."""
    orders = deltas["rung_order"].dropna()
    if orders.nunique() < 2:
        raise ValueError(f"the prior axis needs >= 2 ordered rungs; this grid has {orders.nunique()}")
    return float(orders.min()), float(orders.max())


def rung_label(deltas: pd.DataFrame, order: float) -> str:
    return str(deltas.loc[deltas["rung_order"] == order, "rung"].iloc[0])


def _by_seed(rows: pd.DataFrame, a: str, b: str, rung: str, cols: list[str]) -> pd.DataFrame:
    """One rung's rows of objectives a and b joined on the seeds both ran: `cols` suffixed _a and _b."""
    cells = {}
    for o in (a, b):
        g = rows[rows["objective"] == o]
        if g.empty:
            raise ValueError(f"no run of {o} on rung {rung}")
        if g["seed"].duplicated().any():
            raise ValueError(f"{o} has several runs of one seed on rung {rung} (differing in a setting other than "
                             "the objective's knobs?): compare one setting at a time")
        cells[o] = g.set_index("seed")[cols]
    return cells[a].join(cells[b], how="inner", suffixes=("_a", "_b"))


def _paired(deltas: pd.DataFrame, k: int, a: str, b: str, rung: str) -> pd.DataFrame:
    """Per seed both objectives ran on this rung: their Δpass@k (`delta_a`, `delta_b`), run folders
    (`path_a`, `path_b`) and the contrast `c` = Δa − Δb. Runs of one seed share their base evaluation,
    training prompts and first rollouts, so the seed is the unit of replication: per seed the base cancels
    (Δa − Δb = final_a − final_b), and treating the two objectives' cells as independent would count its
    noise twice, or miss that a shared evaluation seed can make the two Δs move apart."""
    p = _by_seed(deltas[(deltas["k"] == k) & (deltas["rung"] == rung)], a, b, rung, ["delta", "path", "weights"])
    return p.assign(c=p["delta_a"] - p["delta_b"])


MIXED_NOTE = ("‡ a seed's two runs started from different builds of a rebuilt rung (other bases, other first rollouts), "
              "so the contrast carries the builds' difference too")


def mixed_builds(p: pd.DataFrame) -> bool:
    """Whether any seed's two runs (`_by_seed` with `weights`) started from different builds of a rebuilt rung:
    their bases, and first rollouts, differ, which pairing by seed assumes away."""
    return bool((p["weights_a"].notna() & p["weights_b"].notna() & (p["weights_a"] != p["weights_b"])).any())


def _ends_mixed(rows: list[dict]) -> bool:
    """Whether a pair's contrast on its lowest or highest rung (rows of one pair, with `rung_order`) is ‡.
    Rungs without an order (a named model) are not ends, as in `_rung_bounds`."""
    orders = [r["rung_order"] for r in rows if not pd.isna(r["rung_order"])]
    ends = {min(orders), max(orders)} if orders else set()
    return any(r["mixed_builds"] for r in rows if r["rung_order"] in ends)


def perseed_interaction(deltas: pd.DataFrame, k: int, a: str = "nsr", b: str = "psr", level: float = 0.95) -> dict:
    """Difference in differences at pass@k: (Δa − Δb) at the highest rung minus the same at the lowest.
    Within a rung the objectives are paired by seed (`_paired`); the two rungs' per-seed contrasts are
    independent, and combine in a Welch t-interval (Welch–Satterthwaite degrees of freedom)."""
    lo_r, hi_r = _rung_bounds(deltas[deltas["k"] == k])
    c = {r: _paired(deltas, k, a, b, rung_label(deltas, r))["c"].to_numpy() for r in (lo_r, hi_r)}
    w = welch({hi_r: (1, c[hi_r]), lo_r: (-1, c[lo_r])}, level)
    return {"k": k, "did": w["est"], "lo": w["lo"], "hi": w["hi"], "se": w["se"], "df": w["df"], "mde_80": w["mde_80"],
            "rungs": (lo_r, hi_r), "objectives": (a, b), "over": "seeds",
            "ends": (float(c[lo_r].mean()), float(c[hi_r].mean()))}


def _problem_deltas(run_dir: str | Path, k: int) -> pd.Series:
    """Per problem: pass@k at the last evaluation minus at step 0 (from the run's eval samples)."""
    counts = eval_counts(run_dir)
    if counts.empty:
        raise KeyError(f"{run_dir} has no per-problem evaluation samples (eval.jsonl's per_problem counts; a run saved "
                       "before them: `python -m rlvr_utils.study.migrate`, from its samples/eval_*.jsonl)")
    per = counts.apply(lambda r: pass_at_k(int(r["n"]), int(r["c"]), k), axis=1)
    steps = per.index.get_level_values("step")
    return (per[steps == steps.max()].droplevel("step") - per[steps == 0].droplevel("step")).dropna()


def problem_delta_matrix(run_dirs: list, k: int) -> pd.DataFrame:
    """Problems x runs (seeds that evaluate the same problems): each run's change in pass@k per problem."""
    return pd.concat([_problem_deltas(p, k) for p in run_dirs], axis=1)


def _mean_problem_deltas(run_dirs: list, k: int) -> pd.Series:
    """Per problem: the change in pass@k averaged over runs (seeds) that evaluate the same problems."""
    return problem_delta_matrix(run_dirs, k).mean(axis=1)


def problem_delta(run_dirs: str | Path | list, k: int, iters: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """The change in pass@k over problems, paired by problem (last evaluation minus step 0; several runs:
    averaged per problem), with a bootstrap CI over problems: the uncertainty within a seed."""
    paths = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    diff = _mean_problem_deltas(paths, k).dropna().to_numpy()
    lo, hi = bootstrap_ci(diff, iters=iters, seed=seed)
    return float(diff.mean()), lo, hi


def problem_interaction(deltas: pd.DataFrame, k: int, a: str = "nsr", b: str = "psr", iters: int = 2000,
                        seed: int = 0) -> dict:
    """The difference in differences when cells have one seed: per problem (every run evaluates the same
    problems), (Δa − Δb) at the highest rung minus at the lowest, averaged over the cell's runs, with a
    paired bootstrap over problems. It says nothing about seed-to-seed variation: a smoke-scale answer."""
    d = deltas[deltas["k"] == k]
    lo_r, hi_r = _rung_bounds(d)
    per = {}
    for r, o in itertools.product((lo_r, hi_r), (a, b)):
        g = d[(d["rung_order"] == r) & (d["objective"] == o)]
        if g.empty:
            raise ValueError(f"no run of {o} at rung {r:g}")
        per[(r, o)] = _mean_problem_deltas(g["path"].unique(), k)
    df = pd.DataFrame(per).dropna()
    did = ((df[(hi_r, a)] - df[(hi_r, b)]) - (df[(lo_r, a)] - df[(lo_r, b)])).to_numpy()
    lo, hi = bootstrap_ci(did, iters=iters, seed=seed)
    se = float(did.std(ddof=1) / np.sqrt(len(did))) if len(did) > 1 else float("nan")
    return {"k": k, "did": float(did.mean()), "lo": lo, "hi": hi, "se": se, "problems": len(did),
            "mde_80": float((1.96 + 0.84) * se), "rungs": (lo_r, hi_r), "objectives": (a, b), "over": "problems",
            "ends": tuple(float((df[(r, a)] - df[(r, b)]).mean()) for r in (lo_r, hi_r))}


def change_phrase(a: str, b: str, ends: tuple[float, float], at: str = "",
                  where: tuple[str, str] = ("the lowest rung", "the highest")) -> str:
    """How a − b moves from the lowest rung to the highest, with both ends' values and, where one objective
    leads on both, whether its lead grows: 'advantage shrinks' misreads when the advantage is the other's."""
    e0, e1 = ends
    lead = (f"{b}'s lead {'grows' if e1 < e0 else 'shrinks'}" if e0 <= 0 and e1 <= 0
            else f"{a}'s lead {'grows' if e1 > e0 else 'shrinks'}" if e0 >= 0 and e1 >= 0 else "the sign changes")
    return (f"{a} − {b}{at} {'rises' if e1 > e0 else 'falls'} with the prior, from {e0:+.3f} on {where[0]} to "
            f"{e1:+.3f} on {where[1]}: {lead}")


def ends_phrase(a: str, b: str, ends: tuple[float, float], where: tuple[str, str] = ("the lowest rung", "the highest")) -> str:
    return f"{a} − {b} {ends[0]:+.3f} on {where[0]}, {ends[1]:+.3f} on {where[1]}"


def contrast(deltas: pd.DataFrame, k: int, a: str, b: str, rung: str) -> dict:
    """Δa − Δb on one rung at pass@k: a t-interval over the seeds both ran (paired, `_paired`) when there
    are >= 2 that differ, else a bootstrap over problems of the per-problem difference, averaged over the
    seeds both ran (over each objective's own seeds where they share none)."""
    p = _paired(deltas, k, a, b, rung)
    mixed = mixed_builds(p)
    if len(p):  # the seeds both ran, still paired: per problem, the seeds' mean of final_a - final_b
        paths = {a: list(p["path_a"]), b: list(p["path_b"])}
    else:
        d = deltas[(deltas["k"] == k) & (deltas["rung"] == rung)]
        paths = {o: list(d.loc[d["objective"] == o, "path"].unique()) for o in (a, b)}
        builds = {o: set(d.loc[d["objective"] == o, "weights"].dropna()) for o in (a, b)}
        mixed = bool(builds[a] and builds[b] and builds[a] != builds[b])

    def per_problem():
        per = pd.DataFrame({o: _mean_problem_deltas(paths[o], k) for o in (a, b)})
        return (per[a] - per[b]).dropna()

    iv = seeds_else_problems(p["c"].to_numpy(), per_problem, missing="raise")
    return {"est": iv.est, "lo": iv.lo, "hi": iv.hi, "over": "seeds" if iv.over == "seeds" else "problems",
            "mixed_builds": mixed}


def objective_pairs(deltas: pd.DataFrame) -> list[tuple[str, str]]:
    """(a, b) for every pair, a later than b in the registry's order: NSR − PSR, W-REINFORCE − PSR, ..."""
    order = {o: i for i, o in enumerate(OBJECTIVES)}
    objs = sorted(deltas["objective"].dropna().unique(), key=lambda o: (order.get(o.partition("[")[0], len(order)), o))
    return [(a, b) for i, b in enumerate(objs) for a in objs[i + 1:]]


def _change_across_rungs(deltas: pd.DataFrame, k: int, a: str, b: str) -> dict | None:
    """The contrast's change from the lowest to the highest rung (`perseed_interaction`, or its bootstrap over
    problems where a cell has fewer than two seeds); None where the grid can't say yet."""
    for estimate in (perseed_interaction, problem_interaction):
        try:
            it = estimate(deltas, k, a, b)
            return {"est": it["did"], "lo": it["lo"], "hi": it["hi"], "over": it["over"]}
        except (KeyError, ValueError):  # a cell not run yet, no seed spread, or no per-sample records
            continue
    return None


def contrast_table(deltas: pd.DataFrame, ks: tuple[int, ...] = ()) -> pd.DataFrame:
    """Every pair of objectives (`objective_pairs`) on each rung at pass@k for `ks` (default: 1 and the
    largest k), and the pair's change from the lowest to the highest rung. Secondary comparisons: their
    intervals are not adjusted for their number."""
    ks = ks or tuple(sorted({1, int(deltas["k"].max())}))
    rungs = deltas[["rung_order", "rung"]].drop_duplicates().sort_values("rung_order")
    rows = []
    for (a, b), k in itertools.product(objective_pairs(deltas), ks):
        for order, rung in rungs.itertuples(index=False):
            try:
                rows.append({"a": a, "b": b, "k": k, "rung": rung, "rung_order": order} | contrast(deltas, k, a, b, rung))
            except (KeyError, ValueError):  # a cell not run yet, or no per-sample records
                pass
        change = _change_across_rungs(deltas, k, a, b)
        if change:
            mine = [r for r in rows if (r["a"], r["b"], r["k"]) == (a, b, k)]
            rows.append({"a": a, "b": b, "k": k, "rung": "highest − lowest rung", "rung_order": float("inf")} | change
                        | {"mixed_builds": _ends_mixed(mine)})
    return pd.DataFrame(rows, columns=["a", "b", "k", "rung", "rung_order", "est", "lo", "hi", "over", "mixed_builds"])
