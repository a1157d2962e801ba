"""Evaluation: greedy accuracy, sampled pass@k with bootstrap CIs, breakdowns by level and subject."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from contextlib import AbstractContextManager
from dataclasses import dataclass
from math import comb
from pathlib import Path
from typing import Sequence

import numpy as np

from .grading import STATUSES, GradingPool
from .rollouts import Engine, SamplingConfig, mix_seed
from .runs import RunDir, read_jsonl, sample_record, wait_lock


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


def batch_stats(rolls: Sequence, grades: Sequence, keep, n: int) -> dict:
    """What a training step's rollouts looked like: rewards, statuses, lengths, prompts solved by all or
    none of their `n` samples, and kept samples."""
    correct = np.array([g.status == "correct" for g in grades])
    per_prompt = correct.reshape(-1, n)
    lens = [len(r.response_ids) for r in rolls]
    status_counts = Counter(g.status for g in grades)
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
    row["pass1_by_level"] = breakdown(per1, problems, "level")
    row["pass1_by_subject"] = breakdown(per1, problems, "type")
    if s.t1:
        row["t1"] = summarize([float(o[0]) for o in ok["t1"]], s.seed)
    row["response_len_mean"] = float(np.mean([len(r.response_ids) for r in rolls]))
    return row, records


# Settings that shape training only. Two runs that agree on everything else evaluate the same model
# with the same seeds at step 0, so one can reuse the other's step-0 evaluation (`find_base_eval`).
TRAINING_ONLY = frozenset({
    "objective", "lam", "grpo_scale_std", "objective_args", "steps", "prompts_per_step", "rollouts_per_prompt",
    "temperature", "top_p", "max_tokens", "min_tokens", "lr", "warmup_steps", "weight_decay", "adam_beta1",
    "adam_beta2", "max_grad_norm", "mini_batches", "mini_batch_size", "scale_logits", "micro_batch_size", "clip_eps",
    "loss_agg", "loss_norm", "entropy_coef", "gradient_checkpointing", "kl_coef", "eval_every", "checkpoint_every",
    "keep_checkpoint"})


def base_eval_key(saved: dict) -> dict:
    """What a run's step-0 evaluation depends on, from its saved config.json: every setting but the
    training-only ones, the evaluation's length, and what actually ran (`_meta`): the weights'
    fingerprint (a rung rebuilt elsewhere keeps its path), the resolved engine, package versions (the
    grader's among them), device, precision and CPU kind. Threads are left out: they change rounding
    order, not what is sampled from."""
    from .config import TrainConfig

    meta, hw = saved.get("_meta", {}), saved.get("_meta", {}).get("hardware", {})
    key = {k: v for k, v in saved.items() if k not in ("_meta", "eval_max_tokens") and k not in TRAINING_ONLY}
    key["eval_length"] = TrainConfig.from_dict({k: v for k, v in saved.items() if k != "_meta"}, strict=False).eval_length
    return {**key, "engine": meta.get("engine") or saved.get("engine"),  # resolved (auto -> vllm | hf) where saved
            **{k: meta.get(k) for k in ("model_path", "model_fingerprint", "versions")},
            **{k: hw.get(k) for k in ("device", "precision", "name", "bf16_native")}}


def find_base_eval(run: RunDir, key: dict) -> tuple[dict, list[dict], str] | None:
    """A sibling run (same parent folder) whose step-0 evaluation this run would repeat: (its eval row,
    its sample records, its folder name), or None. A grid's objectives share a rung and seed, so only
    one of them needs to sample the base; the others copy it. `key`: the run's `base_eval_key`. Call
    under `base_eval_lock`."""
    for other in sorted(run.path.parent.iterdir()):
        o = RunDir(other)
        if other == run.path or not o.config.exists() or not (o.samples / "eval_00000.jsonl").exists():
            continue
        try:
            if base_eval_key(json.loads(o.config.read_text())) != key:
                continue
            row = next((r for r in o.read_evals() if r["step"] == 0), None)
            if row is not None:
                return row, list(read_jsonl(o.samples / "eval_00000.jsonl")), other.name
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a folder mid-write, damaged, or not a run: evaluate instead
    return None


def base_eval_lock(run: RunDir, key: dict) -> AbstractContextManager[None]:
    """Held while a run looks for, or makes, its step-0 evaluation: cells that start side by side (a
    Ray grid) with the same base (`key`) sample it once; the others wait, then copy it."""
    import hashlib

    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return wait_lock(run.path.parent / f".base-eval-{digest}.lock")


def preview_rollouts(model: str = "smollm2-135m", problems: int = 4, samples: int = 2, max_tokens: int = 96,
                     prompt: str = "answer_is", extraction: str = "boxed_or_answer_is", levels: str = "Level 1",
                     out: str | Path | None = None, engine: str = "hf") -> Path:
    """Sample and grade a few test problems with a model, written as a run folder's eval records
    (`samples/eval_00000.jsonl`) so the rollout browser can read them. Returns the folder."""
    import tempfile

    from .config import TrainConfig
    from .data import prepare_data
    from .hardware import resolve
    from .models import load_policy, load_tokenizer, resolve_model
    from .rollouts import make_engine

    cfg = TrainConfig(model=model, eval_problems=problems, eval_samples=samples, max_tokens=max_tokens,
                      prompt=prompt, extraction=extraction, levels=levels, engine=engine, eval_t1=False)
    path = resolve_model(model)
    tok = load_tokenizer(path)
    data = prepare_data(cfg, tok)
    hw = resolve(cfg.device, cfg.precision)
    policy = load_policy(path, device=hw.device) if engine == "hf" else None
    eng = make_engine(engine, path, policy=policy, tokenizer=tok, dtype=hw.dtype, max_model_len=cfg.max_model_len,
                      seed=0)
    run = RunDir(out or tempfile.mkdtemp(prefix="rlvr-preview-"))
    with GradingPool(workers=1, timeout=cfg.grade_timeout, policy=extraction) as pool:  # type: ignore[arg-type]
        row, recs = evaluate(eng, pool, data.eval, data.eval_prompts,
                             EvalSettings(samples, cfg.eval_temperature, cfg.eval_top_p, max_tokens, False, 0))
    eng.close()
    run.write_samples("eval_00000", recs)
    return run.path
