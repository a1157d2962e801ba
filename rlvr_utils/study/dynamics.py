"""What training did to the policy on its own prompts, from metrics.jsonl and samples/: per rung x objective,
step 1 (the rung's own rollouts) against the last steps, and every pair of objectives' difference."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .frames import Run, eval_counts
from .perseed import _by_seed, _ends_mixed, mixed_builds, objective_pairs
from ..core.stats import seed_ci, welch
from ..priors.recipes import rung_of

# What each objective did to the policy on its training prompts, read from metrics.jsonl. At T=1 the sampled tokens'
# NLL estimates the policy's entropy (`evaluate.batch_stats`); `entropy_kept` would not compare
# objectives, since each takes it over the samples it kept.
DYNAMICS = {"correct_ratio": "reward rate", "sampled_nll": "entropy estimate: sampled NLL (nats/token)",
            "distinct_answers": "distinct answers per prompt", "response_len_mean": "response tokens",
            "truncation_rate": "truncated"}


def spans(runs: list[Run]) -> dict[str, float]:
    """The width of each metric's possible change (last steps minus step 1, or one objective's minus another's):
    rates in [0, 1], distinct answers in [1, rollouts], response tokens in [0, max_tokens]. An interval wider than
    this says nothing (`stats.fmt_interval`'s span)."""
    most = lambda key: max((r.config.get(key) or 0 for r in runs), default=0)  # noqa: E731
    return {"correct_ratio": 2.0, "truncation_rate": 2.0, "distinct_answers": 2.0 * max(most("rollouts_per_prompt") - 1, 1),
            "response_len_mean": 2.0 * most("max_tokens") if most("max_tokens") else float("inf")}


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
        m = r.metrics.sort_values("step")
        order, rung = rung_of(r.config)
        for col in (c for c in DYNAMICS if c in m and m[c].notna().any()):
            rows.append({"run": r.name, "rung_order": order, "rung": rung, "objective": r.objective, "seed": r.config.get("seed"),
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


def cell_movement(runs: list[Run], deltas: pd.DataFrame, last: int = 5) -> pd.DataFrame:
    """How far each finished cell moved its policy, one row per cell: KL(pi_t || pi_0) per token on the samples of
    the last `last` steps, the samples and tokens trained on in all (and drawn), that KL per 1,000 samples trained
    (movement per sample: PSR keeps few), and per problem the RMS change of sampled pass@1 (final minus base, which
    share sampling seeds) against re-sampling noise, the RMS difference between two of its build's base
    evaluations with different sampling seeds: a ratio above 1 is a policy that moved more than sampling it again
    would show."""
    done = {r.name: r for r in runs if not deltas.empty and r.name in set(deltas["run"])}
    rows, bases = [], {}
    for r in done.values():
        order, rung = rung_of(r.config)
        m = r.metrics.sort_values("step") if "step" in r.metrics else pd.DataFrame()
        p1 = _per_problem_pass1(r)
        if p1 is not None:
            bases.setdefault((order, rung, r.weights), {}).setdefault(r.config.get("seed"), p1[0])
        rows.append({"run": r.name, "rung_order": order, "rung": rung, "objective": r.objective, "seed": r.config.get("seed"),
                     "weights": r.weights,
                     "kl_to_init": float(m["kl_to_init"].iloc[-last:].mean()) if "kl_to_init" in m else np.nan,
                     "samples_trained": float(m["kept"].sum()) if "kept" in m else np.nan,
                     "tokens_trained": float(m["tokens_trained"].sum()) if "tokens_trained" in m else np.nan,
                     # dynamic sampling draws more than it trains on; without it every sample drawn is a candidate
                     "samples_drawn": float(m["samples_drawn"].sum() if "samples_drawn" in m else m["samples"].sum())
                     if "samples" in m else np.nan,
                     "change_rms": float(np.sqrt(((p1[1] - p1[0]) ** 2).mean())) if p1 is not None else np.nan})
    if not rows:
        return pd.DataFrame()
    noise = {k: _resampling_rms(list(v.values())) for k, v in bases.items()}
    df = pd.DataFrame(rows)
    df["noise_rms"] = [noise.get((o, r, w), np.nan) for o, r, w in zip(df["rung_order"], df["rung"], df["weights"])]
    df["ratio"] = (df["change_rms"] / df["noise_rms"]).where(df["noise_rms"] > 0)  # each seed against its own build
    # movement per sample trained: a policy's KL to pi_0 per 1,000 samples it trained on (PSR trains on few)
    df["kl_per_1k"] = (1000 * df["kl_to_init"] / df["samples_trained"]).where(df["samples_trained"] > 0)
    return df


def movement(runs: list[Run], deltas: pd.DataFrame, last: int = 5) -> pd.DataFrame:
    """`cell_movement` per rung x objective: means over seeds, with 95% t-intervals for the KL, the ratio and the KL
    per 1,000 samples trained."""
    df = cell_movement(runs, deltas, last)
    if df.empty:
        return df
    out = []
    for (order, rung, obj), g in df.groupby(["rung_order", "rung", "objective"], dropna=False):
        kl, lo, hi = seed_ci(g["kl_to_init"].dropna()) if g["kl_to_init"].notna().any() else (np.nan,) * 3
        ratio, r_lo, r_hi = seed_ci(g["ratio"].dropna()) if g["ratio"].notna().any() else (np.nan,) * 3
        per, p_lo, p_hi = seed_ci(g["kl_per_1k"].dropna()) if g["kl_per_1k"].notna().any() else (np.nan,) * 3
        out.append({"rung_order": order, "rung": rung, "objective": obj, "seeds": len(g), "kl_to_init": kl,
                    "kl_lo": lo, "kl_hi": hi, "samples_trained": float(g["samples_trained"].mean()),
                    "tokens_trained": float(g["tokens_trained"].mean()), "change_rms": float(g["change_rms"].mean()),
                    "noise_rms": float(g["noise_rms"].mean()), "ratio": ratio, "ratio_lo": r_lo, "ratio_hi": r_hi,
                    "samples_drawn": float(g["samples_drawn"].mean()), "kl_per_1k": per, "kl_per_1k_lo": p_lo,
                    "kl_per_1k_hi": p_hi})
    return pd.DataFrame(out)


def _per_problem_pass1(r: Run) -> tuple[pd.Series, pd.Series] | None:
    """A run's sampled pass@1 per problem at step 0 and at its last evaluation, or None without the samples."""
    try:
        counts = eval_counts(r.path)
    except KeyError:
        return None
    if counts.empty:
        return None
    p1 = counts["c"] / counts["n"]
    steps = p1.index.get_level_values("step")
    base, final = p1[steps == 0].droplevel("step"), p1[steps == steps.max()].droplevel("step")
    base, final = base.align(final, join="inner")
    return base, final


def _resampling_rms(bases: list[pd.Series]) -> float:
    """The RMS per-problem difference between evaluations of one model with different sampling seeds (mean over
    pairs); NaN with fewer than two."""
    pairs = [(a, b) for i, a in enumerate(bases) for b in bases[i + 1:]]
    if not pairs:
        return float("nan")
    return float(np.mean([np.sqrt(((x - y) ** 2).mean()) for a, b in pairs for x, y in [a.align(b, join="inner")]]))
