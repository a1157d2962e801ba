"""Evaluation: greedy accuracy, sampled pass@k with bootstrap CIs, breakdowns by level and subject; and
what a training step's rollouts looked like."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .grading import STATUSES, GradingPool
from .rollouts import Engine, SamplingConfig, mix_seed
from .runs import sample_record
from .stats import ks_for, pass_at_k, summarize


def breakdown(per_problem: Sequence[float], problems: Sequence, key: str) -> dict[str, dict]:
    groups: dict[str, list[float]] = defaultdict(list)
    for v, p in zip(per_problem, problems):
        groups[getattr(p, key)].append(v)
    return {g: summarize(vs) for g, vs in sorted(groups.items())}


def batch_stats(rolls: Sequence, grades: Sequence, keep, n: int) -> dict:
    """What a training step's rollouts looked like: rewards, statuses, lengths, prompts solved by all or
    none of their `n` samples, and kept samples."""
    correct = np.array([g.status == "correct" for g in grades])
    per_prompt = correct.reshape(-1, n)
    lens = [len(r.response_ids) for r in rolls]
    status_counts = Counter(g.status for g in grades)
    groups: dict[int, list[int]] = defaultdict(list)
    for j, r in enumerate(rolls):
        groups[r.prompt_index].append(j)
    all_lp = [x for r in rolls for x in r.logprobs]
    return {
        "reward_mean": float(np.mean([g.reward for g in grades])),
        "correct_ratio": float(correct.mean()),
        "samples": len(rolls),
        "kept": int(keep.sum()),
        # -mean log p (raw logits, T=1) of the sampled tokens. Not an entropy: it estimates the T=1
        # policy's entropy only when sampling at T=1. The entropy is `entropy_kept` (update.py): exact,
        # from the logits at the loss's temperature, over the samples trained on.
        "sampled_nll": -float(np.mean(all_lp)) if all_lp else float("nan"),
        "response_len_mean": float(np.mean(lens)),
        "response_len_max": int(max(lens)),
        "truncation_rate": float(np.mean([r.finish_reason == "length" for r in rolls])),
        "prompts_all_correct": int(per_prompt.all(1).sum()),
        # the spread in outcomes PSR may narrow and NSR keep: distinct final answers among a prompt's samples
        # (as extracted strings; no answer counts as one more) and distinct responses, averaged over prompts
        "distinct_answers": float(np.mean([len({grades[j].extracted or "" for j in g}) for g in groups.values()])),
        "distinct_responses": float(np.mean([len({rolls[j].text for j in g}) for g in groups.values()])),
        "prompts_all_wrong": int((~per_prompt).all(1).sum()),
        **{f"status_{st}": status_counts.get(st, 0) for st in STATUSES},
    }


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
                            [SamplingConfig(sp.temperature, sp.top_p, sp.max_tokens, 0, mix_seed(sp.seed, j))
                             for _, _, j, sp in reqs])
    grades = pool.grade([r.text for r in rolls], [golds[i] for _, i, _, _ in reqs])
    ok: dict[str, list[list[bool]]] = {tag: [[] for _ in problems] for tag, _, _ in protocols}
    for (tag, i, j, _), r, g in zip(reqs, rolls, grades):
        ok[tag][i].append(g.status == "correct")
        records.append({**sample_record(problems[i], r, g, protocol=tag), "sample": j})

    greedy = [float(o[0]) for o in ok["greedy"]]
    row["greedy"] = summarize(greedy, s.seed)
    row["greedy_by_level"] = breakdown(greedy, problems, "level")
    row["greedy_by_subject"] = breakdown(greedy, problems, "type")
    row["pass_at_k"] = {}
    for k in ks_for(s.samples):
        per = [pass_at_k(len(o), sum(o), k) for o in ok["sampled"]]
        row["pass_at_k"][str(k)] = summarize(per, s.seed)
    per1 = [pass_at_k(len(o), sum(o), 1) for o in ok["sampled"]]
    # what the study's analysis reads per problem (`study.frames.eval_counts`), compact enough to commit with a
    # study whose sample files stay local: the sampled protocol's correct count of each problem, out of n
    row["per_problem"] = {"n": s.samples, "correct": {p.id: int(sum(o)) for p, o in zip(problems, ok["sampled"])}}
    row["pass1_by_level"] = breakdown(per1, problems, "level")
    row["pass1_by_subject"] = breakdown(per1, problems, "type")
    if s.t1:
        row["t1"] = summarize([float(o[0]) for o in ok["t1"]], s.seed)
    row["response_len_mean"] = float(np.mean([len(r.response_ids) for r in rolls]))
    return row, records
