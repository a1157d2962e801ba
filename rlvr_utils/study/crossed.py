"""The study's estimands with seeds and problems both random: crossed random effects.

Every estimand here is a mean over a seeds x problems matrix Y (one value per training seed and evaluation
problem: a run's per-problem change in pass@k, or a difference of such changes paired by seed). With seeds
and problems both drawn at random, Y[s, p] = mu + u_s + v_p + w_sp, and the grand mean's variance is
var_seed / S + var_problem / P + var_resid / (S P). The two-way ANOVA of a balanced matrix estimates it
without bias as (MS_seed + MS_problem - MS_resid) / (S P) (REML's answer for a balanced design whenever its
components are positive), with Satterthwaite's degrees of freedom. A t over seeds alone (the per-seed
interval in `perseed`) treats the problems as fixed: it misses var_problem / P.

Nothing is floored: a component whose estimate is negative is reported so, and a mean whose variance
estimate is not positive has no interval. The minimum detectable effect is the noncentral t's, with an
interval from the standard error's own uncertainty.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

from .perseed import _by_seed, _rung_bounds, rung_label, problem_delta_matrix


# What the pre-registered study calls an answer of "no" (docs/prereg-family.md): an interval inside +- this
GOAL = {1: 0.02, "largest": 0.05}
DID_SPAN = 4.0  # the width of a difference in differences' range, [-2, 2]: per seed Δa − Δb = final_a − final_b


def goal_for(k: int) -> float:
    return GOAL[1] if k == 1 else GOAL["largest"]


@dataclass(frozen=True)
class CrossedMean:
    est: float
    se: float
    df: float
    lo: float
    hi: float
    seeds: int
    problems: int
    var_seed: float     # u_s: what a training run does to every problem alike
    var_problem: float  # v_p: problems that move more than others, whatever the seed
    var_resid: float    # w_sp: seed x problem (and the evaluation's sampling noise)

    def mde(self, power: float = 0.8, level: float = 0.95) -> float:
        return mde(self.se, self.df, power, level)

    def mde_interval(self, power: float = 0.8, level: float = 0.95, ci: float = 0.95) -> tuple[float, float]:
        return mde_interval(self.se, self.df, power, level, ci)


def crossed_mean(Y: np.ndarray, level: float = 0.95) -> CrossedMean:
    """Y [seeds, problems] (balanced, no missing values) -> its grand mean with seeds and problems random. One
    seed: its mean over the problems, with no variance estimate (NaN se, interval and components)."""
    Y = np.asarray(Y, dtype=float)
    S, P = Y.shape
    if S < 1 or P < 2 or np.isnan(Y).any():
        raise ValueError(f"crossed random effects need >= 2 problems and a seed, all present; got {S} x {P}"
                         + (" with missing values" if np.isnan(Y).any() else ""))
    nan = float("nan")
    if S == 1:  # a seed's spread is unseen, and without it neither component nor any interval is estimable
        return CrossedMean(float(Y.mean()), nan, nan, nan, nan, S, P, var_seed=nan, var_problem=nan, var_resid=nan)
    m, rows, cols = Y.mean(), Y.mean(axis=1), Y.mean(axis=0)
    ms_s = P * ((rows - m) ** 2).sum() / (S - 1)
    ms_p = S * ((cols - m) ** 2).sum() / (P - 1)
    resid = Y - rows[:, None] - cols[None, :] + m
    ms_e = (resid**2).sum() / ((S - 1) * (P - 1))
    v = (ms_s + ms_p - ms_e) / (S * P)
    comps = dict(var_seed=(ms_s - ms_e) / P, var_problem=(ms_p - ms_e) / S, var_resid=ms_e)
    if not v > 0:
        return CrossedMean(float(m), nan, nan, nan, nan, S, P, **comps)
    df = (ms_s + ms_p - ms_e) ** 2 / (ms_s**2 / (S - 1) + ms_p**2 / (P - 1) + ms_e**2 / ((S - 1) * (P - 1)))
    se = float(np.sqrt(v))
    t = float(stats.t.ppf((1 + level) / 2, df))
    return CrossedMean(float(m), se, float(df), float(m - t * se), float(m + t * se), S, P, **comps)


def power(effect: float, se: float, df: float, level: float = 0.95) -> float:
    """P(a two-sided t-test at `level` rejects) when the true effect is `effect`: the noncentral t."""
    tc = stats.t.ppf((1 + level) / 2, df)
    nc = effect / se
    with warnings.catch_warnings():  # far in a tail scipy's series warns, and returns its closest value
        warnings.simplefilter("ignore", RuntimeWarning)
        wrong_side = stats.nct.cdf(-tc, df, nc)  # ~0 once nc is large, where scipy's series returns NaN
        return float(stats.nct.sf(tc, df, nc) + (0.0 if np.isnan(wrong_side) else wrong_side))


def mde(se: float, df: float, power_: float = 0.8, level: float = 0.95) -> float:
    """The smallest effect a two-sided t-test at `level` detects with probability `power_`."""
    if not (se > 0 and df > 0):
        return float("nan")
    hi = 50 * se
    while power(hi, se, df, level) < power_:  # at a fraction of a degree of freedom the t's tails are that heavy
        if hi > 1e6 * se:
            return float("inf")
        hi *= 10
    return float(optimize.brentq(lambda d: power(d, se, df, level) - power_, 0.0, hi))


def mde_interval(se: float, df: float, power_: float = 0.8, level: float = 0.95, ci: float = 0.95) -> tuple[float, float]:
    """The MDE's own interval: the standard error is estimated with `df` degrees of freedom (df se_hat^2 / se^2
    ~ chi2(df)), so the true MDE lies, with probability `ci`, between the MDEs of its interval's ends."""
    if not (se > 0 and df > 0):
        return float("nan"), float("nan")
    lo = se * np.sqrt(df / stats.chi2.ppf((1 + ci) / 2, df))
    hi = se * np.sqrt(df / stats.chi2.ppf((1 - ci) / 2, df))
    return mde(lo, df, power_, level), mde(hi, df, power_, level)


def projected(c: CrossedMean, seeds: int, problems: int, power_: float = 0.8, level: float = 0.95) -> tuple[float, float]:
    """(se, df) of the same estimand with `seeds` x `problems`, from `c`'s variance components as estimated (a
    negative component is used as it is: projections are not made optimistic by flooring); NaN where that
    leaves a variance or an expected mean square that is not positive."""
    ms_s = c.var_resid + problems * c.var_seed
    ms_p = c.var_resid + seeds * c.var_problem
    v = (ms_s + ms_p - c.var_resid) / (seeds * problems)
    # a negative component scaled up can make an expected mean square negative: no design has that
    if not (v > 0 and ms_s >= 0 and ms_p >= 0):
        return float("nan"), float("nan")
    df = (ms_s + ms_p - c.var_resid) ** 2 / (ms_s**2 / (seeds - 1) + ms_p**2 / (problems - 1)
                                              + c.var_resid**2 / ((seeds - 1) * (problems - 1)))
    return float(np.sqrt(v)), float(df)


def sizing(c: CrossedMean, seeds: tuple[int, ...], problems: int, power_: float = 0.8, level: float = 0.95) -> pd.DataFrame:
    """What the same estimand would detect with each number of `seeds` (x `problems`), from `c`'s components as
    estimated (`projected`): the MDE and its interval (the components' own uncertainty, at the pilot's df)."""
    rows = []
    # the pilot knows its standard error to within a chi2(df) factor; a projection inherits that factor
    lo_f, hi_f = ((np.sqrt(c.df / stats.chi2.ppf(q, c.df)) for q in (0.975, 0.025)) if c.df > 0
                  else (float("nan"), float("nan")))
    for S in seeds:
        se, df = projected(c, S, problems, power_, level)
        rows.append({"seeds": S, "problems": problems, "se": se, "df": df, "mde": mde(se, df, power_, level),
                     "mde_lo": mde(se * lo_f, df, power_, level), "mde_hi": mde(se * hi_f, df, power_, level)})
    return pd.DataFrame(rows)


def seeds_for(c: CrossedMean, goal: float, problems: int, max_seeds: int = 10_000, power_: float = 0.8,
              level: float = 0.95) -> int | None:
    """The fewest seeds whose projected MDE on `problems` (`projected`) is <= `goal`; None where no number up to
    `max_seeds` reaches it (the problems' own component alone can keep the MDE above the goal)."""
    meets = lambda S: mde(*projected(c, S, problems, power_, level), power_, level) <= goal  # noqa: E731  (NaN: no)
    if not meets(max_seeds):
        return None
    lo, hi = 1, max_seeds  # the MDE falls as seeds are added: bisect for the first that meets the goal
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if meets(mid) else (mid, hi)
    return hi


# ------------------------------------------------------------------------------ from a grid's run files

def cell_matrix(deltas: pd.DataFrame, k: int, rung: str, objective: str) -> pd.DataFrame:
    """Seeds x problems: each seed's run of `objective` on `rung`, its per-problem change in pass@k."""
    g = deltas[(deltas["k"] == k) & (deltas["rung"] == rung) & (deltas["objective"] == objective)]
    if g.empty:
        raise ValueError(f"no run of {objective} on rung {rung}")
    m = problem_delta_matrix(list(g["path"]), k)
    m.columns = list(g["seed"])
    return m.T.dropna(axis=1)


def contrast_matrix(deltas: pd.DataFrame, k: int, a: str, b: str, rung: str) -> pd.DataFrame:
    """Seeds x problems of Δa − Δb on one rung, paired by seed (runs of a seed share their base)."""
    p = _by_seed(deltas[(deltas["k"] == k) & (deltas["rung"] == rung)], a, b, rung, ["path"])
    if p.empty:
        raise ValueError(f"{a} and {b} share no seed on rung {rung}")
    da, db = (problem_delta_matrix(list(p[f"path_{x}"]), k) for x in ("a", "b"))
    da.columns = db.columns = list(p.index)
    return (da - db).T.dropna(axis=1)


def skill_bounds(deltas: pd.DataFrame) -> tuple[float, float]:
    """The ordered rungs whose bases sample the lowest and the highest pass@1 (mean over their runs' step-0
    evaluations): the skill axis's ends, which need not be the compute axis's (`perseed._rung_bounds`)."""
    base = deltas[(deltas["k"] == 1) & deltas["rung_order"].notna()].groupby("rung_order")["base"].mean()
    if len(base) < 2:
        raise ValueError(f"the prior axis needs >= 2 ordered rungs; this grid has {len(base)}")
    return float(base.idxmin()), float(base.idxmax())


def crossed_interaction(deltas: pd.DataFrame, k: int, a: str = "nsr", b: str = "psr", level: float = 0.95,
                rungs: tuple[float, float] | None = None) -> dict:
    """The primary estimand with seeds and problems random: (Δa − Δb) on the highest rung minus the same on the
    lowest, per seed (paired across rungs: a seed's runs share training prompts and sampling seeds) and problem.
    `rungs`: other ends (orders), e.g. `skill_bounds` for the secondary contrast along skill."""
    lo_r, hi_r = rungs or _rung_bounds(deltas[deltas["k"] == k])
    lo, hi = (contrast_matrix(deltas, k, a, b, rung_label(deltas, r)) for r in (lo_r, hi_r))
    seeds = sorted(set(lo.index) & set(hi.index))
    probs = sorted(set(lo.columns) & set(hi.columns))
    if len(seeds) < 2:
        raise ValueError(f"the rungs share {len(seeds)} seed(s) of {a} and {b}: crossed effects need >= 2")
    c = crossed_mean(hi.loc[seeds, probs].to_numpy() - lo.loc[seeds, probs].to_numpy(), level)
    return {"k": k, "c": c, "rungs": (lo_r, hi_r), "labels": (rung_label(deltas, lo_r), rung_label(deltas, hi_r)),
            "objectives": (a, b), "mde": c.mde(level=level), "mde_interval": c.mde_interval(level=level),
            "ends": tuple(float(m.loc[seeds, probs].to_numpy().mean()) for m in (lo, hi))}


def crossed_effect_table(deltas: pd.DataFrame, ks: tuple[int, ...] = ()) -> pd.DataFrame:
    """Per rung x objective x k: the mean change in pass@k with seeds and problems random (a cell of one seed:
    that seed's mean, with NaN se and interval; `crossed_mean`). A cell with no estimate keeps its row, NaN, with
    `why` (e.g. runs without per-problem counts, or seeds that share fewer than 2 evaluated problems)."""
    ks = ks or tuple(sorted({1, int(deltas["k"].max())}))
    rows = []
    for (order, rung, obj), g in deltas.groupby(["rung_order", "rung", "objective"], dropna=False):
        for k in ks:
            row = {"rung_order": order, "rung": rung, "objective": obj, "k": k, "why": ""}
            try:
                c = crossed_mean(cell_matrix(deltas, k, rung, obj).to_numpy())
            except (KeyError, ValueError) as e:
                rows.append(row | {"est": np.nan, "lo": np.nan, "hi": np.nan, "se": np.nan, "df": np.nan,
                                   "seeds": g["seed"].nunique(), "problems": 0, "why": str(e.args[0] if e.args else e)})
                continue
            rows.append(row | {"est": c.est, "lo": c.lo, "hi": c.hi, "se": c.se, "df": c.df, "seeds": c.seeds,
                               "problems": c.problems})
    return pd.DataFrame(rows)
