"""A grid's per-problem outcomes by rung, build, seed and problem, for the analyses with builds random
(`nested`, `slopes`) and pass@k to large k (`eval_protocols`).

Read straight from each finished run's config.json and eval.jsonl: the rung and its build come from the model's
recipe (a build is the recipe's pretraining `seed`; the rung is the recipe without it), the objective and training
seed from the config, and per problem the correct count out of n at step 0 (the base) and at the last evaluation,
for the main sampled protocol or a named one of `eval_protocols`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.runs import RunDir
from ..core.stats import pass_at_k
from ..priors.recipes import parse_spec, rung_of
from .nested import NestedMean, nested_mean
from .slopes import empirical_logit, pair_table, slope, to_array

_SEED = re.compile(r" seed=(\d+)")


def split_build(label: str) -> tuple[str, int]:
    """'1m/2M seed=1 corpus=…' -> ('1m/2M corpus=…', 1): the rung and the build (its pretraining seed; 0 unnamed)."""
    m = _SEED.search(label)
    return (_SEED.sub("", label), int(m[1])) if m else (label, 0)


def problem_counts(runs_dir: str | Path, protocol: str | None = None) -> pd.DataFrame:
    """One row per finished run x problem: rung, rung_order, build, objective, seed, problem, n, base, final (correct
    counts at step 0 and at the last evaluation). `protocol`: a name of the runs' `eval_protocols`."""
    rows = []
    for d in sorted(p for p in Path(runs_dir).iterdir() if (p / "config.json").exists()):
        run = RunDir(d)
        if run.status().get("state") != "done":
            continue
        cfg = run.saved_config()
        evals = {e["step"]: e for e in run.read_evals()}
        if 0 not in evals or len(evals) < 2:
            continue
        order, label = rung_of(cfg)
        rung, build = split_build(label)
        recipe = parse_spec(str(cfg.get("model", "")))
        build = getattr(recipe, "seed", build) if recipe is not None else build
        pp = [_per_problem(evals[s], protocol, d) for s in (0, max(evals))]
        for pid, c0 in pp[0]["correct"].items():
            if pid in pp[1]["correct"]:
                rows.append({"rung": rung, "rung_order": order, "build": build, "objective": cfg["objective"],
                             "seed": cfg["seed"], "problem": pid, "n": pp[0]["n"], "base": c0, "final": pp[1]["correct"][pid]})
    return pd.DataFrame(rows)


def _per_problem(row: dict, protocol: str | None, where: Path) -> dict:
    src = row if protocol is None else row.get("protocols", {}).get(protocol)
    if not src or "per_problem" not in src:
        raise ValueError(f"{where}: step {row['step']} has no per-problem counts" + (f" for protocol {protocol!r}"
                                                                                    if protocol else ""))
    return src["per_problem"]


def contrast_long(counts: pd.DataFrame, k: int, a: str = "nsr", b: str = "psr", scale: str = "pass") -> pd.DataFrame:
    """Per rung x build x seed x problem: final(a) − final(b) (the base is shared within a seed, so this is Δa − Δb),
    as pass@k (`scale="pass"`) or, for k = 1, on the logit scale (`"logit"`: `slopes.empirical_logit`)."""
    if scale not in ("pass", "logit") or (scale == "logit" and k != 1):
        raise ValueError(f"scale must be 'pass', or 'logit' at k = 1; got {scale!r} at k = {k}")
    keys = ["rung", "rung_order", "build", "seed", "problem"]
    val = (lambda c, n: empirical_logit(c, n)) if scale == "logit" else \
        (lambda c, n: np.array([pass_at_k(int(m), int(x), k) for x, m in zip(c, n)]))  # noqa: E731
    sides = {o: counts[counts["objective"] == o].set_index(keys) for o in (a, b)}
    both = sides[a][["final", "n"]].rename(columns={"final": "final_a"}).join(
        sides[b][["final"]].rename(columns={"final": "final_b"}), how="inner")
    both["value"] = val(both["final_a"].to_numpy(), both["n"].to_numpy()) - val(both["final_b"].to_numpy(), both["n"].to_numpy())
    return both.reset_index()


def base_skill(counts: pd.DataFrame) -> pd.Series:
    """Each rung's base sampled pass@1, averaged over its builds, seeds and problems (the slope's x)."""
    base = counts.drop_duplicates(["rung", "build", "seed", "problem"])
    return (base["base"] / base["n"]).groupby(base["rung"]).mean()


def build_analyses(counts: pd.DataFrame, k: int, goal: float, a: str = "nsr", b: str = "psr") -> dict:
    """With builds, seeds and problems random: per rung the contrast Δa − Δb (`nested_mean`), the slope of it over
    the rungs' base pass@1 (and, at k = 1, on the logit scale), and every rung pair (`slopes.pair_table`)."""
    order = counts.groupby("rung")["rung_order"].first().sort_values()
    rungs = list(order.index)
    labels, Y = to_array(contrast_long(counts, k, a, b), "value", rungs=rungs)
    x = base_skill(counts).reindex(labels).to_numpy()
    per_rung: dict[str, NestedMean] = {r: nested_mean(Y[i]) for i, r in enumerate(labels)}
    out = {"k": k, "rungs": labels, "x": x, "per_rung": per_rung, "slope": slope(x, Y)}
    if k == 1:
        out["slope_logit"] = slope(x, to_array(contrast_long(counts, 1, a, b, "logit"), "value", rungs=rungs)[1])
    out["pairs"], out["pairs_note"] = pair_table(labels, Y, goal)
    return out
