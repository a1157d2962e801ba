"""Pass@k against k, per rung x objective: the base's, each objective's after training, and the change, every value
a mean over a seeds x problems matrix with seeds and problems both random (`crossed.crossed_mean`), its interval
clipped to what the quantity can be (pass@k in [0, 1], a change in [-1, 1]) and flagged where it is wider than that
whole range (a design too small to say anything there)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import gammaln

from .frames import eval_counts
from .crossed import crossed_mean

RANGE = {"base": (0.0, 1.0), "final": (0.0, 1.0), "delta": (-1.0, 1.0)}
INTERVAL = "95% intervals with seeds and problems both random"


def pass_at_k_array(n: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """The unbiased estimator 1 - C(n-c, k) / C(n, k), elementwise (NaN where k > n)."""
    n, c = np.asarray(n, dtype=float), np.asarray(c, dtype=float)
    with np.errstate(invalid="ignore"):
        miss = np.exp(gammaln(n - c + 1) - gammaln(n - c - k + 1) - gammaln(n + 1) + gammaln(n - k + 1))
    out = np.where(n - c < k, 1.0, 1.0 - np.nan_to_num(miss, nan=0.0))
    return np.where(k > n, np.nan, out)


def run_pass_at_k(path: str, ks: tuple[int, ...]) -> dict[str, pd.DataFrame]:
    """One run's per-problem pass@k at its base (step 0) and its last evaluation: {"base"|"final": problems x ks}."""
    counts = eval_counts(path)
    if counts.empty:
        raise KeyError(f"{path} has no per-problem evaluation counts")
    steps = counts.index.get_level_values("step")
    out = {}
    for which, step in (("base", 0), ("final", steps.max())):
        at = counts[steps == step].droplevel("step")
        out[which] = pd.DataFrame({k: pass_at_k_array(at["n"].to_numpy(), at["c"].to_numpy(), k) for k in ks},
                                  index=at.index)
    return out


def _row(values: list[pd.Series], meta: dict, which: str) -> dict:
    """The crossed mean of per-seed per-problem values (problems every seed evaluated), clipped to its range."""
    m = pd.concat(values, axis=1).dropna().T.to_numpy()
    lo_r, hi_r = RANGE[which]
    try:
        c = crossed_mean(m)
        est, lo, hi, seeds, problems = c.est, c.lo, c.hi, c.seeds, c.problems
    except ValueError:
        est, lo, hi, seeds, problems = float(np.mean(m)) if m.size else np.nan, np.nan, np.nan, len(values), m.shape[1]
    wide = bool(hi - lo > hi_r - lo_r)  # NaN: False
    return meta | {"which": which, "est": est, "lo": lo, "hi": hi, "lo_clip": max(lo, lo_r) if lo == lo else lo,
                   "hi_clip": min(hi, hi_r) if hi == hi else hi, "wide": wide, "seeds": seeds, "problems": problems}


def passk_frame(deltas: pd.DataFrame, ks: tuple[int, ...] = ()) -> pd.DataFrame:
    """Per rung (and objective) and k: `base` (each seed's step-0 evaluation, once per seed), `final` and `delta`
    (final - the run's own base), each a crossed mean (`_row`). Runs without per-problem counts are left out."""
    ks = ks or tuple(sorted(int(k) for k in deltas["k"].unique()))
    runs = deltas.drop_duplicates("run")[["rung", "rung_order", "objective", "seed", "path"]]
    per = {}
    for r in runs.itertuples(index=False):
        try:
            per[r.path] = run_pass_at_k(r.path, ks)
        except KeyError:
            continue
    rows = []
    for (order, rung), g in runs[runs["path"].isin(per)].groupby(["rung_order", "rung"], dropna=False, sort=True):
        firsts = g.drop_duplicates("seed")["path"]  # a seed's runs share their base evaluation
        for k in ks:
            meta = {"rung": rung, "rung_order": order, "objective": "base", "k": k}
            rows.append(_row([per[p]["base"][k] for p in firsts], meta, "base"))
            for obj, o in g.groupby("objective"):
                meta = meta | {"objective": obj}
                rows.append(_row([per[p]["final"][k] for p in o["path"]], meta, "final"))
                rows.append(_row([per[p]["final"][k] - per[p]["base"][k] for p in o["path"]], meta, "delta"))
    return pd.DataFrame(rows)


def contrast_frame(deltas: pd.DataFrame, ks: tuple[int, ...], a: str = "nsr", b: str = "psr") -> pd.DataFrame:
    """a − b per rung at each k: Δa − Δb per seed (paired) and problem, its crossed mean (`_row`; range [-1, 1])."""
    from .crossed import contrast_matrix

    rows = []
    for (order, rung), _ in deltas.groupby(["rung_order", "rung"], dropna=False, sort=True):
        for k in ks:
            try:
                m = contrast_matrix(deltas, k, a, b, rung)
            except (KeyError, ValueError):  # an objective not run on this rung, or no per-problem counts
                continue
            rows.append(_row([m.loc[s] for s in m.index], {"rung": rung, "rung_order": order, "objective": f"{a}-{b}",
                                                         "k": k}, "delta"))
    return pd.DataFrame(rows)
