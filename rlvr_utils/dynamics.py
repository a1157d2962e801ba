"""What training did to the policy on its own prompts, from metrics.jsonl and samples/: per rung x objective,
step 1 (the rung's own rollouts) against the last steps, and every pair of objectives' difference."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .analysis import Run, rollout_diversity
from .effects import _by_seed, _ends_mixed, mixed_builds, objective_pairs, rung_of
from .stats import seed_ci, welch

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
    for a, b in objective_pairs(rows):
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
                            "mixed_builds": mixed_builds(p)})
                per_rung[order] = c
        orders = sorted(o for o in per_rung if not np.isnan(o))
        if len(orders) >= 2:
            try:
                w = welch({orders[-1]: (1, per_rung[orders[-1]]), orders[0]: (-1, per_rung[orders[0]])})
                out.append({"a": a, "b": b, "rung": "highest − lowest rung", "rung_order": float("inf"), "est": w["est"],
                            "lo": w["lo"], "hi": w["hi"], "seeds": len(per_rung[orders[0]]) + len(per_rung[orders[-1]]),
                            "mixed_builds": _ends_mixed([r for r in out if (r["a"], r["b"]) == (a, b)])})
            except ValueError:  # a rung with one seed so far
                pass
    return pd.DataFrame(out, columns=DYNAMICS_CONTRAST_COLUMNS)
