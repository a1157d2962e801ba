"""Builds as a random effect: builds, seeds within builds, and problems crossed with both.

A rung (a size x a pretraining dose) is a recipe; its builds are pretraining runs of that recipe with different
seeds. A study whose cells all start from one build answers a question about that build only. With several
builds per rung, an estimand is the grand mean of a builds x seeds x problems array Y[b, s, p] (the seeds of
build b are its own: nested), with problems crossed with builds and seeds:

    Y[b, s, p] = mu + a_b + u_{s(b)} + v_p + (av)_{bp} + w_{bsp}

The grand mean's variance is var_build/B + var_seed/(B S) + var_problem/P + var_build_problem/(B P) +
var_resid/(B S P). For a balanced array the ANOVA mean squares give it without bias as
(MS_build + MS_problem - MS_build_problem) / (B S P) (REML's answer whenever the components are positive),
with Satterthwaite's degrees of freedom; `crossed.crossed_mean` is the case B = 1 with the build fixed.
Nothing is floored. `nested_projected` / `nested_sizing` project the MDE to other builds x seeds x problems.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np
import pandas as pd
from scipy import stats

from .crossed import crossed_mean, mde, mde_interval

NAN = float("nan")


@dataclass(frozen=True)
class NestedMean:
    est: float
    se: float
    df: float
    lo: float
    hi: float
    builds: int
    seeds: int      # per build
    problems: int
    var_build: float          # a_b: what a pretraining run does to every problem alike (+ the seed's, one seed)
    var_seed: float           # u_s(b): a training seed within a build (NaN with one seed per build)
    var_problem: float        # v_p: problems that move more than others, whatever the build
    var_build_problem: float  # (av)_bp: problems a build solves differently from another
    var_resid: float          # seed x problem within a build, and the evaluation's sampling noise

    def mde(self, power: float = 0.8, level: float = 0.95) -> float:
        return mde(self.se, self.df, power, level)

    def mde_interval(self, power: float = 0.8, level: float = 0.95, ci: float = 0.95) -> tuple[float, float]:
        return mde_interval(self.se, self.df, power, level, ci)


def _mean_squares(Y: np.ndarray) -> dict[str, float]:
    B, S, P = Y.shape
    m = Y.mean()
    yb, yp, ybp = Y.mean(axis=(1, 2)), Y.mean(axis=(0, 1)), Y.mean(axis=1)
    ybs = Y.mean(axis=2)
    ms = {"b": S * P * ((yb - m) ** 2).sum() / (B - 1), "p": B * S * ((yp - m) ** 2).sum() / (P - 1),
          "bp": S * ((ybp - yb[:, None] - yp[None, :] + m) ** 2).sum() / ((B - 1) * (P - 1))}
    if S > 1:
        ms["s"] = P * ((ybs - yb[:, None]) ** 2).sum() / (B * (S - 1))
        ms["e"] = ((Y - ybs[:, :, None] - ybp[:, None, :] + yb[:, None, None]) ** 2).sum() / (B * (S - 1) * (P - 1))
    return ms


def nested_mean(Y: np.ndarray, level: float = 0.95) -> NestedMean:
    """Y [builds, seeds per build, problems] (balanced, complete) -> its grand mean with builds, seeds within builds
    and problems random. One build: the build's spread is unseen, so no interval (the components it can see are
    those of `crossed_mean`); one seed per build: the seed's component is not separable (NaN), the mean's
    variance still is."""
    Y = np.asarray(Y, dtype=float)
    if Y.ndim != 3 or np.isnan(Y).any() or Y.shape[2] < 2 or min(Y.shape) < 1:
        raise ValueError(f"nested random effects need a complete builds x seeds x problems array with >= 2 problems; "
                         f"got shape {Y.shape}" + (" with missing values" if np.isnan(Y).any() else ""))
    B, S, P = Y.shape
    if B == 1:
        c = crossed_mean(Y[0], level)
        return NestedMean(float(Y.mean()), NAN, NAN, NAN, NAN, B, S, P, NAN, c.var_seed, c.var_problem, NAN, c.var_resid)
    ms = _mean_squares(Y)
    e = ms.get("e", NAN)
    # E[MS_b] = e + P s + S bp + S P b, E[MS_s] = e + P s, E[MS_bp] = e + S bp, E[MS_e] = e. With one seed per build
    # the seed rides in the build's component and the residual in the build x problem one
    b = (ms["b"] - ms["s"] - ms["bp"] + e) if S > 1 else (ms["b"] - ms["bp"])
    comps = dict(var_build=b / (S * P),
                 var_seed=(ms["s"] - e) / P if S > 1 else NAN,
                 var_problem=(ms["p"] - ms["bp"]) / (B * S),
                 var_build_problem=(ms["bp"] - e) / S if S > 1 else NAN,
                 var_resid=e)
    num = ms["b"] + ms["p"] - ms["bp"]
    m = float(Y.mean())
    if not num > 0:
        return NestedMean(m, NAN, NAN, NAN, NAN, B, S, P, **comps)
    df = num**2 / (ms["b"] ** 2 / (B - 1) + ms["p"] ** 2 / (P - 1) + ms["bp"] ** 2 / ((B - 1) * (P - 1)))
    se = float(np.sqrt(num / (B * S * P)))
    t = float(stats.t.ppf((1 + level) / 2, df))
    return NestedMean(m, se, float(df), m - t * se, m + t * se, B, S, P, **comps)


def nested_projected(c: NestedMean, builds: int, seeds: int, problems: int) -> tuple[float, float]:
    """(se, df) of the same estimand with `builds` x `seeds` x `problems`, from `c`'s components as estimated
    (negative ones as they are); NaN where a component the projection needs is unknown or an expected mean
    square comes out negative."""
    B, S, P = builds, seeds, problems
    if min(B, P) < 2 or S < 1:
        return NAN, NAN
    e, s, b, p, bp = c.var_resid, c.var_seed, c.var_build, c.var_problem, c.var_build_problem
    if S != c.seeds and np.isnan(s):
        return NAN, NAN  # one seed per build: the seed's share of the residual is unknown, so S cannot change
    if np.isnan(s):  # S = 1 as estimated: the seed component rides in the build x problem one
        s, e = 0.0, 0.0
    ms_bp = e + S * bp
    ms_b = ms_bp + P * s + S * P * b
    ms_p = ms_bp + B * S * p
    num = ms_b + ms_p - ms_bp
    if not (num > 0 and ms_b >= 0 and ms_p >= 0 and ms_bp >= 0) or np.isnan(num):
        return NAN, NAN
    df = num**2 / (ms_b**2 / (B - 1) + ms_p**2 / (P - 1) + ms_bp**2 / ((B - 1) * (P - 1)))
    return float(np.sqrt(num / (B * S * P))), float(df)


def nested_sizing(c: NestedMean, builds: tuple[int, ...], seeds: tuple[int, ...], problems: tuple[int, ...],
                  power_: float = 0.8, level: float = 0.95) -> pd.DataFrame:
    """The projected MDE over every builds x seeds x problems design, with an interval carrying the estimate's own
    uncertainty (its standard error's chi2 factor at the estimate's df). Cells run = builds x seeds per rung x
    objective: the `cells` column lets a reader price each design."""
    f_lo, f_hi = ((np.sqrt(c.df / stats.chi2.ppf(q, c.df)) for q in (0.975, 0.025)) if c.df > 0 else (NAN, NAN))
    rows = []
    for B, S, P in product(builds, seeds, problems):
        se, df = nested_projected(c, B, S, P)
        rows.append({"builds": B, "seeds": S, "problems": P, "cells": B * S, "se": se, "df": df,
                     "mde": mde(se, df, power_, level), "mde_lo": mde(se * f_lo, df, power_, level),
                     "mde_hi": mde(se * f_hi, df, power_, level)})
    return pd.DataFrame(rows)


def components_table(c: NestedMean) -> pd.DataFrame:
    """One row per variance component with its share of the grand mean's variance in this design."""
    div = {"var_build": c.builds, "var_seed": c.builds * c.seeds, "var_problem": c.problems,
           "var_build_problem": c.builds * c.problems, "var_resid": c.builds * c.seeds * c.problems}
    v = {k: getattr(c, k) for k in div}
    contrib = {k: v[k] / div[k] for k in div}
    total = np.nansum(list(contrib.values()))
    return pd.DataFrame([{"component": k[4:], "variance": v[k], "divisor": div[k], "share_of_var_mean":
                          contrib[k] / total if total > 0 else NAN} for k in div])
