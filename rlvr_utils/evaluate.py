"""Evaluation: greedy accuracy, sampled pass@k with bootstrap CIs, breakdowns by level and subject."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from math import comb
from typing import Sequence

import numpy as np

from .grading import GradingPool
from .rollouts import Engine, SamplingConfig


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator 1 - C(n-c, k) / C(n, k) (Chen et al. 2021)."""
    if k > n:
        raise ValueError(f"k={k} > n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def ks_for(n: int) -> list[int]:
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    return ks


def bootstrap_ci(values: Sequence[float], iters: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile CI of the mean, resampling problems."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(iters, len(v)))].mean(1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def summarize(values: Sequence[float], seed: int = 0) -> dict:
    lo, hi = bootstrap_ci(values, seed=seed)
    return {"mean": float(np.mean(values)) if len(values) else float("nan"), "lo": lo, "hi": hi, "n": len(values)}


def breakdown(per_problem: Sequence[float], problems: Sequence, key: str) -> dict[str, dict]:
    groups: dict[str, list[float]] = defaultdict(list)
    for v, p in zip(per_problem, problems):
        groups[getattr(p, key)].append(v)
    return {g: summarize(vs) for g, vs in sorted(groups.items())}


@dataclass(frozen=True)
class EvalSettings:
    samples: int = 4
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 512
    t1: bool = True  # the original study's protocol: 1 sample at T=1.0
    seed: int = 0


def evaluate(engine: Engine, pool: GradingPool, problems: Sequence, prompt_ids: Sequence[list[int]],
             s: EvalSettings) -> tuple[dict, list[dict]]:
    """Returns (summary row for eval.jsonl, per-sample records)."""
    golds = [p.gold for p in problems]
    records: list[dict] = []
    row: dict = {"n_problems": len(problems)}

    def run(tag: str, n: int, sp: SamplingConfig) -> list[list[bool]]:
        rolls = engine.generate(prompt_ids, n, sp)
        grades = pool.grade([r.text for r in rolls], [golds[r.prompt_index] for r in rolls])
        ok: list[list[bool]] = [[] for _ in problems]
        for r, g in zip(rolls, grades):
            ok[r.prompt_index].append(g.status == "correct")
            p = problems[r.prompt_index]
            records.append({"protocol": tag, "problem_id": p.id, "sample": r.sample_index, "level": p.level,
                            "subject": p.type, "completion": r.text, "extracted": g.extracted, "gold": p.gold,
                            "status": g.status, "reward": g.reward, "finish_reason": r.finish_reason,
                            "response_tokens": len(r.response_ids)})
        return ok

    greedy = [float(o[0]) for o in run("greedy", 1, SamplingConfig(0.0, 1.0, s.max_tokens, 0, s.seed))]
    row["greedy"] = summarize(greedy, s.seed)
    row["greedy_by_level"] = breakdown(greedy, problems, "level")
    row["greedy_by_subject"] = breakdown(greedy, problems, "type")
    ok = run("sampled", s.samples, SamplingConfig(s.temperature, s.top_p, s.max_tokens, 0, s.seed + 1))
    row["pass_at_k"] = {}
    for k in ks_for(s.samples):
        per = [pass_at_k(len(o), sum(o), k) for o in ok]
        row["pass_at_k"][str(k)] = summarize(per, s.seed)
    per1 = [pass_at_k(len(o), sum(o), 1) for o in ok]
    row["pass1_by_level"] = breakdown(per1, problems, "level")
    row["pass1_by_subject"] = breakdown(per1, problems, "type")
    if s.t1:
        t1 = [float(o[0]) for o in run("t1", 1, SamplingConfig(1.0, 1.0, s.max_tokens, 0, s.seed + 2))]
        row["t1"] = summarize(t1, s.seed)
    return row, records
