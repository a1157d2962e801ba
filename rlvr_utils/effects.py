"""The prior study's answer: each objective's change against its rung's own base, with CIs, the noise
floor, and the interaction (does NSR's edge over PSR grow or shrink with the prior?).

Pure functions from run files (`analysis.load_grid`). CIs say over what: across seeds (t-based, the
primary one) or over problems (paired bootstrap within one run). A rung is the model a run started
from: a warm start's `n` (from `warmstart.json` beside the weights) or the model's name.
"""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .analysis import Run, load_samples, rollout_diversity, seed_ci
from .evaluate import bootstrap_ci, pass_at_k
from .runs import RunDir


def objective_label(objective: str) -> str:
    """An objective's name as the paper writes it: w_reinforce -> W-REINFORCE; an arm keeps its knobs
    (w_reinforce[lam=0.5] -> W-REINFORCE[lam=0.5])."""
    name, bracket, knobs = objective.partition("[")
    return name.upper().replace("_", "-") + bracket + knobs


NO_WIDTH = 1e-12  # an interval narrower than this is seeds that agree exactly (float noise aside)

def rung_of(run: Run) -> tuple[float, str]:
    """(order, label) of the rung a run started from: a warm start's dose n (from the recipe beside its
    weights, or from a `warm:` spec when the rung is not on this machine: committed runs read anywhere),
    else the model's name."""
    from .models import WARM_PREFIX
    from .warmstart import warmstart_from_spec

    model = str(run.config.get("_meta", {}).get("model_path") or run.config.get("model", ""))
    recipe = Path(model) / "warmstart.json"
    if recipe.exists():
        n = json.loads(recipe.read_text())["n"]
        return float(n), f"n={n}"
    spec = str(run.config.get("model", ""))
    if spec.startswith(WARM_PREFIX):
        n = warmstart_from_spec(spec).n
        return float(n), f"n={n}"
    return float("nan"), Path(model.rstrip("/")).name or model


def run_deltas(runs: list[Run]) -> pd.DataFrame:
    """One row per run and k: pass@k at step 0 (the base) and at the last evaluation, and the change."""
    rows = []
    for r in runs:
        ev = r.evals
        if ev.empty or 0 not in set(ev["step"]) or ev["step"].max() == 0:
            continue
        order, label = rung_of(r)
        base, last = ev[ev["step"] == 0].iloc[0], ev.loc[ev["step"].idxmax()]
        for col in (c for c in ev.columns if c.startswith("pass@") and "_" not in c):
            rows.append({"rung": label, "rung_order": order, "objective": r.objective,
                         "seed": r.config.get("seed"), "run": r.name, "path": str(r.path), "k": int(col.split("@")[1]),
                         "weights": r.weights,
                         "base": float(base[col]), "final": float(last[col]), "delta": float(last[col] - base[col])})
    return pd.DataFrame(rows)


# How a cell's interval was formed, and its mark in the table: pass@k over a few dozen problems moves in
# steps of 1/problems, so seeds can agree exactly, and a zero-width t-interval would claim a certainty the
# problems' spread does not support; such a cell, like a one-seed cell, gets a bootstrap over problems.
OVER_MARK = {"seeds": "", "problems, one seed": "*", "problems, seeds agree": "†"}


def effect_table(deltas: pd.DataFrame) -> pd.DataFrame:
    """Per rung x objective x k: mean change with its 95% interval, `over` saying which: t over seeds
    where a cell has >= 2 that differ, else a bootstrap over problems (seeds averaged per problem);
    "none" (no interval) where the runs kept no per-sample records."""
    rows = []
    for (order, rung, obj, k), g in deltas.groupby(["rung_order", "rung", "objective", "k"], dropna=False):
        m, lo, hi = seed_ci(g["delta"])
        over = "seeds"
        if not hi - lo > NO_WIDTH:  # also one seed: its interval is NaN
            over = "problems, one seed" if len(g) < 2 else "problems, seeds agree"
            try:
                m, lo, hi = problem_delta(g["path"].unique(), int(k))
            except (KeyError, ValueError):  # no per-sample records to resample
                m, lo, hi, over = float(g["delta"].mean()), float("nan"), float("nan"), "none"
        rows.append({"rung": rung, "rung_order": order, "objective": obj, "k": k, "delta": m, "lo": lo, "hi": hi,
                     "seeds": len(g), "over": over})
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


def _rung_label(deltas: pd.DataFrame, order: float) -> str:
    return str(deltas.loc[deltas["rung_order"] == order, "rung"].iloc[0])


def _interaction_cells(deltas: pd.DataFrame, k: int, a: str, b: str) -> tuple[float, float, dict]:
    """The interaction's four cells at pass@k: (lowest rung, highest rung, {(rung, objective): its rows})."""
    d = deltas[deltas["k"] == k]
    lo_r, hi_r = _rung_bounds(d)
    return lo_r, hi_r, {(r, o): d[(d["rung_order"] == r) & (d["objective"] == o)] for r in (lo_r, hi_r) for o in (a, b)}


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


def _mixed_builds(p: pd.DataFrame) -> bool:
    """Whether any seed's two runs (`_by_seed` with `weights`) started from different builds of a rebuilt rung:
    their bases, and first rollouts, differ, which pairing by seed assumes away."""
    return bool((p["weights_a"].notna() & p["weights_b"].notna() & (p["weights_a"] != p["weights_b"])).any())


def _ends_mixed(rows: list[dict]) -> bool:
    """Whether a pair's contrast on its lowest or highest rung (rows of one pair, with `rung_order`) is ‡.
    Rungs without an order (a named model) are not ends, as in `_rung_bounds`."""
    orders = [r["rung_order"] for r in rows if not pd.isna(r["rung_order"])]
    ends = {min(orders), max(orders)} if orders else set()
    return any(r["mixed_builds"] for r in rows if r["rung_order"] in ends)


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


def interaction(deltas: pd.DataFrame, k: int, a: str = "nsr", b: str = "psr", level: float = 0.95) -> dict:
    """Difference in differences at pass@k: (Δa − Δb) at the highest rung minus the same at the lowest.
    Within a rung the objectives are paired by seed (`_paired`); the two rungs' per-seed contrasts are
    independent, and combine in a Welch t-interval (Welch–Satterthwaite degrees of freedom)."""
    lo_r, hi_r = _rung_bounds(deltas[deltas["k"] == k])
    c = {r: _paired(deltas, k, a, b, _rung_label(deltas, r))["c"].to_numpy() for r in (lo_r, hi_r)}
    w = _welch({hi_r: (1, c[hi_r]), lo_r: (-1, c[lo_r])}, level)
    return {"k": k, "did": w["est"], "lo": w["lo"], "hi": w["hi"], "se": w["se"], "df": w["df"], "mde_80": w["mde_80"],
            "rungs": (lo_r, hi_r), "objectives": (a, b), "over": "seeds"}


def _welch(cells: dict, level: float = 0.95) -> dict:
    """A signed sum of independent cells' seed means, {cell: (sign, values)}, with its t-interval (Welch-
    Satterthwaite degrees of freedom) and the minimum detectable effect at 80% power."""
    from scipy import stats

    if any(len(v) < 2 for _, v in cells.values()):
        raise ValueError(f"a t-interval needs >= 2 seeds in each of {sorted(cells)}; got {[len(v) for _, v in cells.values()]}")
    est = float(sum(sign * v.mean() for sign, v in cells.values()))
    var = {c: v.var(ddof=1) / len(v) for c, (_, v) in cells.items()}
    se = float(np.sqrt(sum(var.values())))
    if se < NO_WIDTH:  # pass@k moves in steps of 1/problems: seeds can agree exactly, and a t-interval can't
        raise ValueError("the seeds of every cell moved by exactly the same amount: no seed variation to form a t-interval")
    df = se**4 / sum(v**2 / (len(cells[c][1]) - 1) for c, v in var.items())
    t = float(stats.t.ppf((1 + level) / 2, df))
    return {"est": est, "lo": est - t * se, "hi": est + t * se, "se": se, "df": float(df),
            "mde_80": float((t + stats.t.ppf(0.8, df)) * se)}


@functools.lru_cache(maxsize=256)
def _eval_counts(run_dir: str, stamp: tuple) -> pd.DataFrame:
    """(step, problem) -> sampled answers n and correct c at step 0 and the last evaluation, read-only.
    `stamp` (the eval files' names, sizes, inodes and mtimes: an atomic rewrite is a new inode) keys the
    cache, so every k and every contrast reads a run's files once."""
    s = load_samples(run_dir, "eval")
    s = s[s["protocol"] == "sampled"]
    s = s[s["step"].isin([0, s["step"].max()])]
    return (s.assign(c=s["status"] == "correct").groupby(["step", "problem_id"])["c"].agg(n="size", c="sum"))


def _problem_deltas(run_dir: str | Path, k: int) -> pd.Series:
    """Per problem: pass@k at the last evaluation minus at step 0 (from the run's eval samples)."""
    files = sorted(RunDir(run_dir).samples.glob("eval_*.jsonl"))
    stamp = tuple((f.name, st.st_size, st.st_ino, st.st_mtime_ns) for f in files for st in [f.stat()])
    counts = _eval_counts(str(run_dir), stamp)
    if counts.empty:
        raise KeyError(f"{run_dir}: no sampled evaluation records")
    per = counts.apply(lambda r: pass_at_k(int(r["n"]), int(r["c"]), k), axis=1)
    steps = per.index.get_level_values("step")
    return (per[steps == steps.max()].droplevel("step") - per[steps == 0].droplevel("step")).dropna()


def _problem_delta_matrix(run_dirs: list, k: int) -> pd.DataFrame:
    """Problems x runs (seeds that evaluate the same problems): each run's change in pass@k per problem."""
    return pd.concat([_problem_deltas(p, k) for p in run_dirs], axis=1)


def _mean_problem_deltas(run_dirs: list, k: int) -> pd.Series:
    """Per problem: the change in pass@k averaged over runs (seeds) that evaluate the same problems."""
    return _problem_delta_matrix(run_dirs, k).mean(axis=1)


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
    lo_r, hi_r, cells = _interaction_cells(deltas, k, a, b)
    per = {}
    for (r, o), g in cells.items():
        if g.empty:
            raise ValueError(f"no run of {o} at rung {r:g}")
        per[(r, o)] = _mean_problem_deltas(g["path"].unique(), k)
    df = pd.DataFrame(per).dropna()
    did = ((df[(hi_r, a)] - df[(hi_r, b)]) - (df[(lo_r, a)] - df[(lo_r, b)])).to_numpy()
    lo, hi = bootstrap_ci(did, iters=iters, seed=seed)
    se = float(did.std(ddof=1) / np.sqrt(len(did))) if len(did) > 1 else float("nan")
    return {"k": k, "did": float(did.mean()), "lo": lo, "hi": hi, "se": se, "problems": len(did),
            "mde_80": float((1.96 + 0.84) * se), "rungs": (lo_r, hi_r), "objectives": (a, b), "over": "problems"}


def contrast(deltas: pd.DataFrame, k: int, a: str, b: str, rung: str) -> dict:
    """Δa − Δb on one rung at pass@k: a t-interval over the seeds both ran (paired, `_paired`) when there
    are >= 2 that differ, else a bootstrap over problems of the per-problem difference, averaged over the
    seeds both ran (over each objective's own seeds where they share none)."""
    p = _paired(deltas, k, a, b, rung)
    mixed = _mixed_builds(p)
    m, lo, hi = seed_ci(p["c"]) if len(p) >= 2 else (float("nan"),) * 3
    if hi - lo > NO_WIDTH:  # False without two seeds: no interval
        return {"est": m, "lo": lo, "hi": hi, "over": "seeds", "mixed_builds": mixed}
    if len(p):  # the seeds both ran, still paired: per problem, the seeds' mean of final_a - final_b
        paths = {a: list(p["path_a"]), b: list(p["path_b"])}
    else:
        d = deltas[(deltas["k"] == k) & (deltas["rung"] == rung)]
        paths = {o: list(d.loc[d["objective"] == o, "path"].unique()) for o in (a, b)}
        builds = {o: set(d.loc[d["objective"] == o, "weights"].dropna()) for o in (a, b)}
        mixed = bool(builds[a] and builds[b] and builds[a] != builds[b])
    per = pd.DataFrame({o: _mean_problem_deltas(paths[o], k) for o in (a, b)})
    diff = (per[a] - per[b]).dropna().to_numpy()
    lo, hi = bootstrap_ci(diff, iters=2000)
    return {"est": float(diff.mean()), "lo": lo, "hi": hi, "over": "problems", "mixed_builds": mixed}


def _objective_pairs(deltas: pd.DataFrame) -> list[tuple[str, str]]:
    """(a, b) for every pair, a later than b in the registry's order: NSR − PSR, W-REINFORCE − PSR, ..."""
    from .objectives import OBJECTIVES

    order = {o: i for i, o in enumerate(OBJECTIVES)}
    objs = sorted(deltas["objective"].dropna().unique(), key=lambda o: (order.get(o.partition("[")[0], len(order)), o))
    return [(a, b) for i, b in enumerate(objs) for a in objs[i + 1:]]


def _change_across_rungs(deltas: pd.DataFrame, k: int, a: str, b: str) -> dict | None:
    """The contrast's change from the lowest to the highest rung (`interaction`, or its bootstrap over
    problems where a cell has fewer than two seeds); None where the grid can't say yet."""
    for estimate in (interaction, problem_interaction):
        try:
            it = estimate(deltas, k, a, b)
            return {"est": it["did"], "lo": it["lo"], "hi": it["hi"], "over": it["over"]}
        except (KeyError, ValueError):  # a cell not run yet, no seed spread, or no per-sample records
            continue
    return None


def contrast_table(deltas: pd.DataFrame, ks: tuple[int, ...] = ()) -> pd.DataFrame:
    """Every pair of objectives (`_objective_pairs`) on each rung at pass@k for `ks` (default: 1 and the
    largest k), and the pair's change from the lowest to the highest rung. Secondary comparisons: their
    intervals are not adjusted for their number."""
    ks = ks or tuple(sorted({1, int(deltas["k"].max())}))
    rungs = deltas[["rung_order", "rung"]].drop_duplicates().sort_values("rung_order")
    rows = []
    for (a, b), k in itertools.product(_objective_pairs(deltas), ks):
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


def contrast_markdown(deltas: pd.DataFrame, k: int = 0) -> str:
    """`contrast_table` as markdown: a row per pair and k, a column per rung and the change across them."""
    k = k or int(deltas["k"].max())
    t = contrast_table(deltas, tuple(sorted({1, k})))
    if t.empty:
        return ""
    cols = t[["rung_order", "rung"]].drop_duplicates().sort_values("rung_order")["rung"].tolist()
    lines = ["| contrast | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for (a, b, kk), g in t.groupby(["a", "b", "k"], sort=False):
        cell = {r["rung"]: f"{r['est']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]{'*' * (r['over'] == 'problems')}"
                           f"{'‡' * bool(r['mixed_builds'])}" for r in g.to_dict("records")}
        lines.append(f"| {objective_label(a)} − {objective_label(b)}, Δpass@{kk} | "
                     + " | ".join(cell.get(c, "—") for c in cols) + " |")
    return "\n".join(lines)


def variance_components(deltas: pd.DataFrame, k: int, a: str = "nsr", b: str = "psr") -> pd.DataFrame:
    """The interaction's two rungs at pass@k, each rung's seed-to-seed variance of the contrast Δa − Δb
    (paired by seed) split two ways (problems x seeds, two-way without replication): `var_seed`, the
    training runs' own spread, which more evaluation problems would not shrink, and `var_sp`, seed x
    problem variation per problem (evaluation sampling included), which enters a seed's contrast divided
    by the number of problems. `var_seed` is floored at 0: seed means that spread less than their
    problems imply do so by chance."""
    rows = []
    for r in _rung_bounds(deltas[deltas["k"] == k]):
        p = _paired(deltas, k, a, b, _rung_label(deltas, r))
        if len(p) < 2:
            raise ValueError(f"variance components need >= 2 seeds of {a} and {b} at rung {r:g}; got {len(p)}")
        m = (_problem_delta_matrix(list(p["path_a"]), k)
             - _problem_delta_matrix(list(p["path_b"]), k)).dropna().to_numpy()  # problems x seeds, paired
        n_p, n_s = m.shape
        resid = m - m.mean(axis=1, keepdims=True) - m.mean(axis=0, keepdims=True) + m.mean()
        var_sp = float((resid**2).sum() / ((n_p - 1) * (n_s - 1)))
        var_means = float(m.mean(axis=0).var(ddof=1))
        rows.append({"rung_order": r, "contrast": f"{a} − {b}", "seeds": n_s, "problems": n_p,
                     "var_seed": max(0.0, var_means - var_sp / n_p), "var_sp": var_sp})
    return pd.DataFrame(rows)


def projected_mde(components: pd.DataFrame, seeds: int, problems: int, level: float = 0.95,
                  power: float = 0.8) -> float:
    """The interaction's minimum detectable effect if both rungs had `seeds` seeds of each objective
    evaluated on `problems` problems, from `variance_components` (Welch t as in `interaction`)."""
    from scipy import stats

    if seeds < 2 or problems < 1:
        raise ValueError(f"a t-interval needs seeds >= 2 and problems >= 1; got seeds={seeds}, problems={problems}")
    var = components["var_seed"] + components["var_sp"] / problems  # one seed's Δ
    se2 = float((var / seeds).sum())
    df = se2**2 / float(((var / seeds) ** 2 / (seeds - 1)).sum())
    return float((stats.t.ppf((1 + level) / 2, df) + stats.t.ppf(power, df)) * np.sqrt(se2))


def design_table(deltas: pd.DataFrame, k: int, seeds: tuple[int, ...] = (3, 5, 10),
                 problem_factors: tuple[int, ...] = (1, 4)) -> str:
    """Markdown: the MDE this grid's variance components project for more seeds and more problems."""
    comp = variance_components(deltas, k)
    p0 = int(comp["problems"].min())
    cols = [p0 * f for f in problem_factors]
    rows = ["| seeds per rung and objective | " + " | ".join(f"MDE, {p} problems" for p in cols) + " |",
            "|---|" + "---|" * len(cols)]
    for s in seeds:
        rows.append(f"| {s} | " + " | ".join(f"{projected_mde(comp, s, p):.3f}" for p in cols) + " |")
    return "\n".join(rows)


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
    return (f"{verdict}: difference in differences {it['did']:+.3f} [{it['lo']:+.3f}, {it['hi']:+.3f}] ({over}, "
            f"rung {it['rungs'][0]:g} vs {it['rungs'][1]:g}); the smallest effect this design detects with 80% "
            f"power is {it['mde_80']:.3f}.")


def headline(deltas: pd.DataFrame, k: int = 0) -> str:
    """The report's first line: `answer` at pass@k (k=0: the largest k evaluated), or why this grid
    cannot give one (it needs >= 2 rungs, each with a PSR and an NSR run)."""
    if deltas.empty:
        return "No run has both a step-0 and a later evaluation yet: nothing to compare."
    k = k or int(deltas["k"].max())
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
    k = k or int(deltas["k"].max())
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


# What each objective did to the policy on its training prompts, read from metrics.jsonl and, for the
# distinct answers per prompt, from samples/ (`analysis.rollout_diversity`). At T=1 the sampled tokens'
# NLL estimates the policy's entropy (`evaluate.batch_stats`); `entropy_kept` would not compare
# objectives, since each takes it over the samples it kept.
DYNAMICS = {"correct_ratio": "reward rate", "sampled_nll": "sampled NLL (nats/token)",
            "distinct_answers": "distinct answers per prompt", "response_len_mean": "response tokens",
            "truncation_rate": "truncated"}


def training_dynamics(runs: list[Run], deltas: pd.DataFrame, last: int = 5) -> pd.DataFrame:
    """Per rung x objective x metric: its value at step 1 (rollouts of the rung itself: same-seed runs
    share them) and its mean over the last `last` steps after step 1, with the change's 95% t-interval
    over seeds. Only runs in `deltas` (finished: a last evaluation), so this table and the Δpass@k table
    agree. `first` averages the cell's own seeds: cells with different seeds start from different rollouts."""
    rows = _dynamics_rows(runs, deltas, last)
    if rows.empty:
        return pd.DataFrame()
    out = []
    for (order, rung, obj, col), g in rows.groupby(["rung_order", "rung", "objective", "metric"], dropna=False):
        m, lo, hi = seed_ci(g["last"] - g["first"])
        out.append({"rung_order": order, "rung": rung, "objective": obj, "metric": col, "seeds": len(g),
                    "first": float(g["first"].mean()), "last": float(g["last"].mean()), "delta": m, "lo": lo, "hi": hi})
    return pd.DataFrame(out)


def _dynamics_rows(runs: list[Run], deltas: pd.DataFrame, last: int) -> pd.DataFrame:
    """One row per finished run x metric: its value at step 1 and its mean over the last `last` steps after it."""
    done = set(deltas["run"]) if not deltas.empty else set()
    rows = []
    for r in runs:
        if r.name not in done or "step" not in r.metrics:
            continue
        m = r.metrics.merge(rollout_diversity(r.path), on="step", how="left").sort_values("step")  # from samples/
        order, rung = rung_of(r)
        for col in (c for c in DYNAMICS if c in m and m[c].notna().any()):
            rows.append({"rung_order": order, "rung": rung, "objective": r.objective, "seed": r.config.get("seed"),
                         "metric": col, "first": float(m[col].iloc[0]), "last": float(m[col].iloc[1:].iloc[-last:].mean()),
                         "weights": r.weights})
    return pd.DataFrame(rows)


DYNAMICS_CONTRAST_COLUMNS = ["a", "b", "rung", "rung_order", "est", "lo", "hi", "seeds", "mixed_builds"]


def dynamics_contrast(runs: list[Run], deltas: pd.DataFrame, metric: str = "sampled_nll", last: int = 5) -> pd.DataFrame:
    """Every pair of objectives' difference in `metric` over the last `last` steps, per rung, paired by seed
    (same-seed runs start from the same rollouts, so last_a − last_b is their difference in change), with
    its 95% t-interval over seeds, and the difference's change from the lowest to the highest rung (Welch).
    The paper's mechanism, at T=1 with the default metric: does NSR keep the entropy that PSR removes?"""
    rows = _dynamics_rows(runs, deltas, last)
    out = []
    if rows.empty or metric not in set(rows["metric"]):
        return pd.DataFrame(out, columns=DYNAMICS_CONTRAST_COLUMNS)
    rows = rows[rows["metric"] == metric]
    for a, b in _objective_pairs(rows):
        per_rung = {}
        for (order, rung), g in rows.groupby(["rung_order", "rung"], dropna=False):
            try:
                p = _by_seed(g, a, b, rung, ["last", "weights"])
            except ValueError:  # a cell not run yet, or unpairable (`contrast_table` skips them too)
                continue
            c = (p["last_a"] - p["last_b"]).dropna().to_numpy()
            if len(c):
                m, lo, hi = seed_ci(c)
                out.append({"a": a, "b": b, "rung": rung, "rung_order": order, "est": m, "lo": lo, "hi": hi, "seeds": len(c),
                            "mixed_builds": _mixed_builds(p)})
                per_rung[order] = c
        orders = sorted(o for o in per_rung if not np.isnan(o))
        if len(orders) >= 2:
            try:
                w = _welch({orders[-1]: (1, per_rung[orders[-1]]), orders[0]: (-1, per_rung[orders[0]])})
                out.append({"a": a, "b": b, "rung": "highest − lowest rung", "rung_order": float("inf"), "est": w["est"],
                            "lo": w["lo"], "hi": w["hi"], "seeds": len(per_rung[orders[0]]) + len(per_rung[orders[-1]]),
                            "mixed_builds": _ends_mixed([r for r in out if (r["a"], r["b"]) == (a, b)])})
            except ValueError:  # a rung with one seed so far
                pass
    return pd.DataFrame(out, columns=DYNAMICS_CONTRAST_COLUMNS)


def dynamics_contrast_markdown(con: pd.DataFrame, metric: str = "sampled_nll", last: int = 5) -> str:
    """`dynamics_contrast` as markdown: a row per pair, a column per rung and the change across them."""
    if con.empty:
        return ""
    cols = con[["rung_order", "rung"]].drop_duplicates().sort_values("rung_order")["rung"].tolist()
    lines = ["| contrast | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for (a, b), g in con.groupby(["a", "b"], sort=False):
        # per-prompt counts move in steps (1/80 over 5 steps x 16 prompts), so seeds can agree exactly:
        # a zero-width t-interval would claim a certainty three seeds do not give
        cell = {r["rung"]: f"{r['est']:+.3f}" + ("" if pd.isna(r["hi"]) else " (seeds agree)" if r["hi"] - r["lo"] <= NO_WIDTH
                                                  else f" [{r['lo']:+.3f}, {r['hi']:+.3f}]") + "‡" * bool(r["mixed_builds"])
                for r in g.to_dict("records")}
        lines.append(f"| {objective_label(a)} − {objective_label(b)} | " + " | ".join(cell.get(c, "—") for c in cols) + " |")
    mixed = f"; {MIXED_NOTE}" if con["mixed_builds"].any() else ""
    return (f"Between objectives, {DYNAMICS[metric]} over the last {last} steps (difference, 95% t-interval over "
            f"seeds, the objectives paired by seed{mixed}):\n\n" + "\n".join(lines) + "\n")


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
            ci = ("" if pd.isna(e["hi"]) else ", seeds agree" if e["hi"] - e["lo"] <= NO_WIDTH
                  else f" [{e['lo']:+{f}}, {e['hi']:+{f}}]")
            cells.append(f"{e['first']:{f}} → {e['last']:{f}} ({e['delta']:+{f}}{ci})")
        lines.append(f"| {rung} | {obj} | {int(g['seeds'].iloc[0])} | " + " | ".join(cells) + " |")
    return (f"What training did to the policy on its own training prompts: step 1 (the rung's own rollouts) → mean of "
            f"the last {last} steps after it (change, 95% t-interval over seeds).\n\n" + "\n".join(lines) + "\n")


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
    return f"{e['delta']:+.3f} [{e['lo']:+.3f}, {e['hi']:+.3f}]{OVER_MARK[e['over']]}"
