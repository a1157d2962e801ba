"""What a design can detect: the interaction's variance components, the MDE they project for more seeds and
problems, and that projection as a markdown table."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .perseed import _paired, _rung_bounds, rung_label, problem_delta_matrix


def variance_components(deltas: pd.DataFrame, k: int, a: str = "nsr", b: str = "psr") -> pd.DataFrame:
    """The interaction's two rungs at pass@k, each rung's seed-to-seed variance of the contrast Δa − Δb
    (paired by seed) split two ways (problems x seeds, two-way without replication): `var_seed`, the
    training runs' own spread, which more evaluation problems would not shrink, and `var_sp`, seed x
    problem variation per problem (evaluation sampling included), which enters a seed's contrast divided
    by the number of problems. `var_seed` is floored at 0: seed means that spread less than their
    problems imply do so by chance."""
    rows = []
    for r in _rung_bounds(deltas[deltas["k"] == k]):
        p = _paired(deltas, k, a, b, rung_label(deltas, r))
        if len(p) < 2:
            raise ValueError(f"variance components need >= 2 seeds of {a} and {b} at rung {r:g}; got {len(p)}")
        m = (problem_delta_matrix(list(p["path_a"]), k)
             - problem_delta_matrix(list(p["path_b"]), k)).dropna().to_numpy()  # problems x seeds, paired
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
    evaluated on `problems` problems, from `variance_components` (Welch t as in `perseed_interaction`)."""
    if seeds < 2 or problems < 1:
        raise ValueError(f"a t-interval needs seeds >= 2 and problems >= 1; got seeds={seeds}, problems={problems}")
    var = components["var_seed"] + components["var_sp"] / problems  # one seed's Δ
    se2 = float((var / seeds).sum())
    if not se2 > 0:  # neither end's contrast varies (no policy moved, pass@k saturated): no t, nothing to project
        return float("nan")
    df = se2**2 / float(((var / seeds) ** 2 / (seeds - 1)).sum())
    return float((stats.t.ppf((1 + level) / 2, df) + stats.t.ppf(power, df)) * np.sqrt(se2))


def design_table(deltas: pd.DataFrame, k: int, seeds: tuple[int, ...] = (3, 5, 10, 20, 30),
                 problem_factors: tuple[int, ...] = (1, 4)) -> str:
    """Markdown: the MDE this grid's variance components project for more seeds and more problems (— where
    there is no positive variance to project from)."""
    comp = variance_components(deltas, k)
    p0 = int(comp["problems"].min())
    cols = [p0 * f for f in problem_factors]
    rows = ["| seeds per rung and objective | " + " | ".join(f"MDE, {p} problems" for p in cols) + " |",
            "|---|" + "---|" * len(cols)]
    cell = lambda d: "—" if d != d else f"{d:.3f}"  # noqa: E731
    for s in seeds:
        rows.append(f"| {s} | " + " | ".join(cell(projected_mde(comp, s, p)) for p in cols) + " |")
    return "\n".join(rows)
