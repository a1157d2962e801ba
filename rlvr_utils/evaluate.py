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

    # All protocols in one engine call: one big batch decodes much faster than three small ones.
    # Samples are expanded to n=1 requests with their own seeds (prefix caching shares the prompt).
    protocols = [("greedy", 1, SamplingConfig(0.0, 1.0, s.max_tokens, 0, s.seed)),
                 ("sampled", s.samples, SamplingConfig(s.temperature, s.top_p, s.max_tokens, 0, s.seed + 1))]
    if s.t1:
        protocols.append(("t1", 1, SamplingConfig(1.0, 1.0, s.max_tokens, 0, s.seed + 2)))
    reqs = [(tag, i, j, sp) for tag, n, sp in protocols for i in range(len(problems)) for j in range(n)]
    rolls = engine.generate([prompt_ids[i] for _, i, _, _ in reqs], 1,
                            [SamplingConfig(sp.temperature, sp.top_p, sp.max_tokens, 0, sp.seed * 7919 + j)
                             for _, _, j, sp in reqs])
    grades = pool.grade([r.text for r in rolls], [golds[i] for _, i, _, _ in reqs])
    ok: dict[str, list[list[bool]]] = {tag: [[] for _ in problems] for tag, _, _ in protocols}
    for (tag, i, j, _), r, g in zip(reqs, rolls, grades):
        ok[tag][i].append(g.status == "correct")
        p = problems[i]
        records.append({"protocol": tag, "problem_id": p.id, "sample": j, "level": p.level, "subject": p.type,
                        "problem": p.problem, "completion": r.text, "extracted": g.extracted, "gold": p.gold,
                        "status": g.status, "reward": g.reward, "finish_reason": r.finish_reason,
                        "response_tokens": len(r.response_ids)})

    greedy = [float(o[0]) for o in ok["greedy"]]
    row["greedy"] = summarize(greedy, s.seed)
    row["greedy_by_level"] = breakdown(greedy, problems, "level")
    row["greedy_by_subject"] = breakdown(greedy, problems, "type")
    row["pass_at_k"] = {}
    for k in ks_for(s.samples):
        per = [pass_at_k(len(o), sum(o), k) for o in ok["sampled"]]
        row["pass_at_k"][str(k)] = summarize(per, s.seed)
    per1 = [pass_at_k(len(o), sum(o), 1) for o in ok["sampled"]]
    row["pass1_by_level"] = breakdown(per1, problems, "level")
    row["pass1_by_subject"] = breakdown(per1, problems, "type")
    if s.t1:
        row["t1"] = summarize([float(o[0]) for o in ok["t1"]], s.seed)
    row["response_len_mean"] = float(np.mean([len(r.response_ids) for r in rolls]))
    return row, records
