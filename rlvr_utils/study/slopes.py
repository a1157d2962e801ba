"""Analyses that use every rung and say their scale: the slope of a contrast over the rungs' base skill, the same on
the logit scale, and every pair of rungs as a sensitivity table with its multiplicity stated.

Input is one array Y[rung, build, seed, problem] of a per-problem contrast (e.g. Δpass@1 of NSR − PSR, paired by
seed), balanced. Builds are paired across rungs by their index and seeds by theirs (a build index is a pretraining
seed, a seed index a training seed: rungs that share them share data order and sampling seeds); where they are
independent instead, the index-paired units are still independent and identically distributed, so the interval
stays valid. Each estimand is a fixed linear combination over rungs, sum_r w_r Y[r], whose array over builds x
seeds x problems goes to `nested.nested_mean`: builds, seeds and problems are all random. The rungs' skills x are
conditioned on (taken as measured).
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .nested import NestedMean, nested_mean


def slope_weights(x: Sequence[float]) -> np.ndarray:
    """w with sum_r w_r y_r = the least-squares slope of y on x."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0 or np.isnan(x).any():
        raise ValueError(f"a slope needs >= 2 rungs with different skills; got {list(x)}")
    d = x - x.mean()
    return d / (d**2).sum()


def combine(Y: np.ndarray, w: Sequence[float], level: float = 0.95) -> NestedMean:
    """sum_r w_r Y[r] (Y: rungs x builds x seeds x problems) with builds, seeds and problems random."""
    Y = np.asarray(Y, dtype=float)
    w = np.asarray(w, dtype=float)
    if Y.ndim != 4 or len(w) != Y.shape[0]:
        raise ValueError(f"need Y[rung, build, seed, problem] and one weight per rung; got {Y.shape} and {len(w)} weights")
    return nested_mean(np.tensordot(w, Y, axes=1), level)


def slope(x: Sequence[float], Y: np.ndarray, level: float = 0.95) -> NestedMean:
    """The slope of the contrast over the rungs' base skill x (per unit of x)."""
    return combine(Y, slope_weights(x), level)


def slope_span(x: Sequence[float], width: float = 2.0) -> float:
    """The width of the range a slope can take: a difference whose values span `width` (2 for a difference of two
    rates, in [-1, 1]) changes by at most ±width over the rungs' span of x. An interval wider says nothing at this n."""
    x = np.asarray(x, dtype=float)
    return 2 * width / (x.max() - x.min()) if len(x) > 1 and x.max() > x.min() else float("nan")


def empirical_logit(correct: np.ndarray, n: int | np.ndarray) -> np.ndarray:
    """log((c + 1/2) / (n - c + 1/2)): a problem's pass@1 on the logit scale, finite at 0 and n correct
    (the Haldane-Anscombe correction)."""
    c = np.asarray(correct, dtype=float)
    return np.log((c + 0.5) / (np.asarray(n, dtype=float) - c + 0.5))


def slope_verdict(est_lo_hi: tuple[float, float, float], goal: float) -> str:
    """The pre-registered rule: yes (with its sign) when the interval excludes 0, no when it lies within +-goal."""
    _, lo, hi = est_lo_hi
    if np.isnan(lo):
        return "no interval"
    if lo > 0 or hi < 0:
        return "yes (+)" if lo > 0 else "yes (−)"
    return "no" if -goal <= lo and hi <= goal else "inconclusive"


def pair_table(labels: Sequence[str], Y: np.ndarray, goal: float, level: float = 0.95) -> tuple[pd.DataFrame, str]:
    """Every pair of rungs (i < j in `labels`' order): Y[j] − Y[i] with builds, seeds and problems random, its
    answer by the rule (`answer`) at `level`, and a Bonferroni interval for the number of pairs. Returns the table
    and the sentence stating the multiplicity (a reader must not take its best row as the answer)."""
    pairs = list(combinations(range(len(labels)), 2))
    m = len(pairs)
    adj = 1 - (1 - level) / m
    rows = []
    for i, j in pairs:
        w = np.zeros(len(labels))
        w[i], w[j] = -1.0, 1.0
        c = combine(Y, w, level)
        half = stats.t.ppf((1 + adj) / 2, c.df) * c.se if c.se > 0 else np.nan
        rows.append({"low": labels[i], "high": labels[j], "est": c.est, "lo": c.lo, "hi": c.hi, "df": c.df,
                     "answer": slope_verdict((c.est, c.lo, c.hi), goal), "lo_bonf": c.est - half, "hi_bonf": c.est + half,
                     "answer_bonf": slope_verdict((c.est, c.est - half, c.est + half), goal)})
    df = pd.DataFrame(rows)
    counts = df["answer"].value_counts().to_dict() if m else {}
    note = (f"{m} rung pairs, each at {level:.0%} unadjusted ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}); "
            f"the Bonferroni columns hold the family-wise rate at {level:.0%} ({adj:.2%} per pair). A sensitivity "
            "table: the pre-registered contrast is the answer, the other pairs say how much it depends on the pair.")
    return df, note


def to_array(long: pd.DataFrame, value: str, rung: str = "rung", build: str = "build", seed: str = "seed",
             problem: str = "problem", rungs: Sequence | None = None) -> tuple[list, np.ndarray]:
    """A long frame (one row per rung x build x seed x problem) -> (rung labels, Y[rung, build, seed, problem]) on the
    largest balanced part: the builds every rung has, the seeds every build has, the problems every cell has."""
    rungs = list(rungs) if rungs is not None else sorted(long[rung].unique())
    d = long[long[rung].isin(rungs)]
    keep_b = set.intersection(*(set(g[build]) for _, g in d.groupby(rung)))
    d = d[d[build].isin(keep_b)]
    keep_s = set.intersection(*(set(g[seed]) for _, g in d.groupby([rung, build])))
    d = d[d[seed].isin(keep_s)]
    keep_p = set.intersection(*(set(g[problem]) for _, g in d.groupby([rung, build, seed])))
    d = d[d[problem].isin(keep_p)]
    if not (keep_b and keep_s and len(keep_p) >= 2):
        raise ValueError(f"no balanced part: {len(keep_b)} common build(s), {len(keep_s)} seed(s), {len(keep_p)} problem(s)")
    idx = pd.MultiIndex.from_product([rungs, sorted(keep_b), sorted(keep_s), sorted(keep_p)])
    arr = d.set_index([rung, build, seed, problem])[value].reindex(idx).to_numpy()
    return rungs, arr.reshape(len(rungs), len(keep_b), len(keep_s), len(keep_p))
