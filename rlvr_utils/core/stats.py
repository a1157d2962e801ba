"""Statistics primitives: pass@k, bootstrap and t-intervals, Welch's combination and the MDE, and the
one rule (and formatter) for which interval a cell gets.

Every interval says over what it was formed: across seeds (a t-interval: training runs are the unit
of replication) or over problems (a bootstrap within runs, when seeds cannot give one).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from math import comb, isnan
from typing import Callable, Sequence

import numpy as np

NO_WIDTH = 1e-12  # an interval narrower than this is seeds that agree exactly (float noise aside)


def reported_k(ks: Sequence[int], n: float) -> int:
    """The largest k a study reports: the largest of `ks` with 2k <= n samples (pass@k from exactly k samples is
    "any of k correct", the noisiest form of the estimator), else the largest of `ks`."""
    ks = sorted(int(k) for k in ks)
    fit = [k for k in ks if 2 * k <= n]
    return fit[-1] if fit else ks[-1]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator 1 - C(n-c, k) / C(n, k) of P(any of k samples is correct) (Chen et al. 2021)."""
    if k > n:
        raise ValueError(f"k={k} > n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def ks_for(n: int) -> list[int]:
    """The k of pass@k reported from n samples: 1, 2, 4, ... <= n."""
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    return ks


def largest_remainder(counts: dict[str, int], n: int) -> dict[str, int]:
    """n split over strata in proportion to their counts: each its floor, then one more to the largest remainders
    (ties by name). Stratified subsets take these, so that a subset keeps every stratum's share."""
    total = sum(counts.values())
    quota = {t: n * c / total for t, c in counts.items()}
    take = {t: int(q) for t, q in quota.items()}
    for t in sorted(quota, key=lambda t: (-(quota[t] - take[t]), t))[: n - sum(take.values())]:
        take[t] += 1
    return take


def stratified_first(strata: Sequence[str], m: int) -> list[int]:
    """The indices of a stratified m of a list whose items carry `strata`: each stratum's first ones, its share of
    m (`largest_remainder`). A list drawn as a stratified subset is so again, whatever m (a stratum's first ones in a
    shuffled stratum are its shuffle's prefix)."""
    if m >= len(strata):
        return list(range(len(strata)))
    take, out = largest_remainder(Counter(strata), m), []
    for i, s in enumerate(strata):
        if take[s] > 0:
            out.append(i)
            take[s] -= 1
    return out


def bootstrap_ci(values: Sequence[float], iters: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile CI of the mean, resampling problems."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(iters, len(v)))].mean(1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def summarize(values: Sequence[float], seed: int = 0) -> dict:
    """{mean, lo, hi, n}: a mean over problems with its bootstrap CI."""
    lo, hi = bootstrap_ci(values, seed=seed)
    return {"mean": float(np.mean(values)) if len(values) else float("nan"), "lo": lo, "hi": hi, "n": len(values)}


def seed_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) across seeds: mean +- t_{(1+level)/2, n-1} * s / sqrt(n). With 3 seeds t is 4.30,
    not 1.96. One value has no spread to estimate: (value, nan, nan)."""
    from scipy import stats as st  # on first use: the trainer imports this module, only the analysis needs scipy

    v = np.asarray(values, dtype=float)
    m = float(v.mean())
    if len(v) < 2:
        return m, float("nan"), float("nan")
    half = float(st.t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return m, m - half, m + half


def welch(cells: dict, level: float = 0.95) -> dict:
    """A signed sum of independent cells' seed means, {cell: (sign, values)}, with its t-interval (Welch-
    Satterthwaite degrees of freedom) and the minimum detectable effect at 80% power."""
    from scipy import stats as st

    if any(len(v) < 2 for _, v in cells.values()):
        raise ValueError(f"a t-interval needs >= 2 seeds in each of {sorted(cells)}; got {[len(v) for _, v in cells.values()]}")
    est = float(sum(sign * v.mean() for sign, v in cells.values()))
    var = {c: v.var(ddof=1) / len(v) for c, (_, v) in cells.items()}
    se = float(np.sqrt(sum(var.values())))
    if se < NO_WIDTH:  # pass@k moves in steps of 1/problems: seeds can agree exactly, and a t-interval can't
        raise ValueError("the seeds of every cell moved by exactly the same amount: no seed variation to form a t-interval")
    df = se**4 / sum(v**2 / (len(cells[c][1]) - 1) for c, v in var.items())
    t = float(st.t.ppf((1 + level) / 2, df))
    return {"est": est, "lo": est - t * se, "hi": est + t * se, "se": se, "df": float(df),
            "mde_80": float((t + st.t.ppf(0.8, df)) * se)}


# How a cell's interval was formed, and its mark in a table: pass@k over a few dozen problems moves in
# steps of 1/problems, so seeds can agree exactly, and a zero-width t-interval would claim a certainty the
# problems' spread does not support; such a cell, like a one-seed cell, gets a bootstrap over problems.
OVER_MARK = {"seeds": "", "problems, one seed": "*", "problems, seeds agree": "†"}


@dataclass(frozen=True)
class Interval:
    est: float
    lo: float
    hi: float
    over: str  # a key of OVER_MARK, or "none" (no interval: no per-sample records)

    @property
    def mark(self) -> str:
        return OVER_MARK.get(self.over, "")


def seeds_else_problems(per_seed: Sequence[float], per_problem: Callable[[], Sequence[float]],
                        iters: int = 2000, missing: str = "none") -> Interval:
    """The one rule: a t-interval over seeds where there are >= 2 that differ; else a bootstrap over
    problems of `per_problem()` (the cell's per-problem values, seeds averaged per problem), saying why.
    Where there are no per-problem records (`per_problem` raises KeyError or ValueError): `missing="none"`
    gives the seeds' mean without an interval, "raise" lets the error through."""
    m, lo, hi = seed_ci(per_seed) if len(per_seed) else (float("nan"),) * 3
    if hi - lo > NO_WIDTH:  # False for one seed: its interval is NaN
        return Interval(m, lo, hi, "seeds")
    over = "problems, one seed" if len(per_seed) < 2 else "problems, seeds agree"
    try:
        v = np.asarray(per_problem(), dtype=float)
    except (KeyError, ValueError):
        if missing == "raise":
            raise
        return Interval(float(np.mean(per_seed)) if len(per_seed) else float("nan"), float("nan"), float("nan"), "none")
    blo, bhi = bootstrap_ci(v, iters=iters)
    return Interval(float(v.mean()), blo, bhi, over)


def fmt_interval(est: float, lo: float, hi: float, spec: str = ".3f", agree: str | None = None,
                 span: float | None = None) -> str:
    """'+0.050 [+0.010, +0.090]'; just the estimate where there is no interval; `agree` (when given)
    in place of a zero-width one: seeds that agree exactly; where the interval is wider than `span` (the width of
    the quantity's whole range), that, not its ends: at this n it says nothing."""
    if isnan(hi):
        return f"{est:+{spec}}"
    if span is not None and hi - lo > span:
        return f"{est:+{spec}} (interval wider than the whole range)"
    if agree is not None and hi - lo <= NO_WIDTH:
        return f"{est:+{spec}}{agree}"
    return f"{est:+{spec}} {fmt_bounds(lo, hi, spec)}"


def fmt_bounds(lo: float, hi: float, spec: str = ".3f", span: float | None = None) -> str:
    """An interval's ends alone ('[+0.010, +0.090]', as `fmt_interval` gives them): '–' where there is none, and
    'wider than the whole range' where it is wider than `span`."""
    if isnan(hi):
        return "–"
    if span is not None and hi - lo > span:
        return "wider than the whole range"
    return f"[{lo:+{spec}}, {hi:+{spec}}]"
