"""The RL loop: sample prompts -> rollouts -> grade -> objective -> micro-batched update -> sync.

The only orchestrator, meant to be read top to bottom. What it calls lives elsewhere: data
preparation in `data.py`, who is kept with what advantage in `objectives.py`, the loss maths in
`losses.py`, and every file it writes goes through `runs.RunDir`.
"""

from __future__ import annotations

import copy
import math
import random
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from transformers import AutoConfig

from .config import TrainConfig
from .data import Cursor, Prepared, prepare_data
from .evaluate import EvalSettings, evaluate
from .grading import STATUSES, GradingPool
from .hardware import check_plan, memory_plan
from .hardware import resolve as resolve_hardware
from .losses import aggregate, kl_k3, loss_denominator, masked_sum, pg_loss, policy_loss, response_logprobs
from .models import load_policy, load_tokenizer, resolve_model
from .objectives import advantages, objective_kwargs
from .prompts import check_budget, context_length
from .rollouts import Engine, SamplingConfig, make_engine, mix_seed
from .runs import RunDir, append_jsonl, provenance, sample_record


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False,
          log: Callable[[str], None] = print, stop_after: int | None = None) -> RunDir:
    """Run (or resume) one training run into `run_dir`. `stop_after`: return after that many steps
    in this call (a test hook that simulates a kill right after a checkpoint)."""
    run = RunDir(run_dir)
    if run.config.exists():
        saved = TrainConfig.load(run.config)
        if not resume:
            raise FileExistsError(f"{run.path} already holds a run; pass resume=True (--resume) to continue it")
        if saved != cfg:
            diff = {k: (v, getattr(cfg, k)) for k, v in saved.to_dict().items() if getattr(cfg, k) != v}
            raise ValueError(f"{run.config}: config differs from the saved run: {diff}")
        if run.status().get("state") == "done":
            log(f"{run.path}: already done")
            return run
    run.path.mkdir(parents=True, exist_ok=True)
    run.set_status("running")
    try:
        _train(cfg, run, resume, log, stop_after)
    except BaseException as e:
        run.set_status("failed", error=f"{type(e).__name__}: {e}"[:2000])
        raise
    return run


def _train(cfg: TrainConfig, run: RunDir, resume: bool, log: Callable[[str], None], stop_after: int | None) -> None:
    t_start = time.perf_counter()
    s = _setup(cfg, run, resume, log)
    try:
        if s.start == 0:
            _evaluate(s, 0)
        for step in range(s.start + 1, s.cfg.steps + 1):
            m = _step(s, step)
            append_jsonl(run.metrics, [m])
            for k, v in m.items():
                if isinstance(v, (int, float)) and k != "step":
                    s.tb.add_scalar(f"train/{k}", v, step)
            log(f"step {step}/{cfg.steps}: reward {m['reward_mean']:.3f} kept {m['kept']}/{m['samples']} "
                f"loss {m['loss']:.4f} len {m['response_len_mean']:.0f} ({m['time_total']:.1f}s)")
            if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps:
                _evaluate(s, step)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps:
                _checkpoint(s, step)
                if stop_after is not None and step >= stop_after:
                    return
        s.tb.flush()
        run.set_status("done", seconds=round(time.perf_counter() - t_start, 1))
        if not cfg.keep_checkpoint:
            shutil.rmtree(run.checkpoints, ignore_errors=True)
    finally:
        s.close()


@dataclass
class Loop:
    """What a run holds while it trains: built once by `_setup`, used by every step."""

    cfg: TrainConfig  # with concrete device and precision (the saved config keeps `auto`)
    run: RunDir
    data: Prepared
    policy: Any
    ref: Any  # a frozen copy of the initial policy when kl_coef > 0, else None
    opt: torch.optim.Optimizer
    sched: Any
    cursor: Cursor
    engine: Engine
    pool: GradingPool
    tb: Any
    eval_settings: EvalSettings
    log: Callable[[str], None]
    start: int = 0  # steps already done (resume)

    def close(self) -> None:
        self.tb.close()
        self.pool.close()
        self.engine.close()


def _setup(cfg: TrainConfig, run: RunDir, resume: bool, log: Callable[[str], None]) -> Loop:
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    model_path = resolve_model(cfg.model)
    check_budget([0] * cfg.max_prompt_tokens, max(cfg.max_tokens, cfg.eval_max_tokens), context_length(model_path),
                 "max_prompt_tokens")  # before any weights load
    tok = load_tokenizer(model_path)
    data = prepare_data(cfg, tok)
    hw = resolve_hardware(cfg.device, cfg.precision)
    log(f"hardware: {hw}")
    plan = memory_plan(AutoConfig.from_pretrained(model_path), cfg, hw)
    log(str(plan))
    check_plan(plan)  # before any weights load
    if not run.config.exists():
        cfg.save(run.config, {**provenance(), "model_path": model_path, "n_train": len(data.train),
                              "n_eval": len(data.eval), "dropped": data.dropped, "hardware": hw.to_dict(),
                              "memory_plan_gb": {k: round(v / 1e9, 3) for k, v in plan.parts.items()}})
    cfg = cfg.replace(device=hw.device, precision=hw.precision)

    policy = load_policy(model_path, device=hw.device)
    if cfg.gradient_checkpointing:
        policy.gradient_checkpointing_enable()
    policy.train()
    policy.config.use_cache = False
    ref = copy.deepcopy(policy).eval().requires_grad_(False) if cfg.kl_coef > 0 else None
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                            weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0)
    cursor = Cursor(len(data.train), cfg.seed)
    start = 0
    ck = run.load_checkpoint() if resume else None
    if ck is not None:
        policy.load_state_dict(ck["policy"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        cursor.consumed = ck["cursor"]
        _restore_rng(ck["rng"])
        start = ck["step"]
        log(f"resumed from checkpoint after step {start}")
    run.truncate_after(start if start else -1)  # rows past the checkpoint are redone

    engine = make_engine(cfg.engine, model_path, policy=policy, tokenizer=tok, dtype=hw.dtype,
                         max_model_len=cfg.max_model_len, seed=cfg.seed, gpu_memory_utilization=cfg.vllm_gpu_memory,
                         sleep_mode=cfg.vllm_sleep)
    if start > 0:
        engine.sync_weights(policy)
    pool = GradingPool(workers=cfg.grade_workers, timeout=cfg.grade_timeout, policy=cfg.extraction)  # type: ignore[arg-type]
    try:
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(str(run.tb), purge_step=start + 1 if start else None)
    except ImportError:  # a bare GPU image without tensorboard: the run files still hold every metric
        log("tensorboard not installed: no tb/ event files")
        tb = _NoBoard()
    es = EvalSettings(cfg.eval_samples, cfg.eval_temperature, cfg.eval_top_p, cfg.eval_max_tokens or cfg.max_tokens,
                      cfg.eval_t1, cfg.seed)
    return Loop(cfg, run, data, policy, ref, opt, sched, cursor, engine, pool, tb, es, log, start)


def _step(s: Loop, step: int) -> dict:
    """One RL step: rollouts of the next prompts, grades, advantages, the update, the weight sync."""
    cfg = s.cfg
    t0 = time.perf_counter()
    idx = s.cursor.take(cfg.prompts_per_step)
    sp = SamplingConfig(cfg.temperature, cfg.top_p, cfg.max_tokens, cfg.min_tokens, mix_seed(cfg.seed, step))
    rolls = s.engine.generate([s.data.train_prompts[i] for i in idx], cfg.rollouts_per_prompt, sp)
    t1 = time.perf_counter()
    probs = [s.data.train[idx[r.prompt_index]] for r in rolls]
    grades = s.pool.grade([r.text for r in rolls], [p.gold for p in probs])
    t2 = time.perf_counter()
    correct = torch.tensor([g.status == "correct" for g in grades])
    groups = torch.tensor([r.prompt_index for r in rolls])
    adv, keep = advantages(cfg.objective, correct, groups, **objective_kwargs(cfg))
    upd = update_policy(cfg, s.policy, s.ref, s.opt, s.sched, rolls, adv, keep, step)
    t3 = time.perf_counter()
    if upd["optimizer_steps"]:
        s.engine.sync_weights(s.policy)
    t4 = time.perf_counter()

    s.run.write_samples(f"step_{step:05d}", [sample_record(p, r, g, step=step, advantage=float(a), kept=bool(k))
                                             for r, p, g, a, k in zip(rolls, probs, grades, adv, keep)])
    lens = [len(r.response_ids) for r in rolls]
    per_prompt = correct.view(cfg.prompts_per_step, cfg.rollouts_per_prompt)
    status_counts = Counter(g.status for g in grades)
    all_lp = [x for r in rolls for x in r.logprobs]
    return {
        "step": step,
        "reward_mean": float(np.mean([g.reward for g in grades])),
        "correct_ratio": float(correct.float().mean()),
        "samples": len(rolls),
        "kept": int(keep.sum()),
        **upd,
        # -mean log p of sampled tokens: an unbiased estimate of the policy's entropy at T=1
        "entropy": -float(np.mean(all_lp)) if all_lp else float("nan"),
        "response_len_mean": float(np.mean(lens)),
        "response_len_max": int(max(lens)),
        "truncation_rate": float(np.mean([r.finish_reason == "length" for r in rolls])),
        "prompts_all_correct": int(per_prompt.all(1).sum()),
        "prompts_all_wrong": int((~per_prompt).all(1).sum()),
        **{f"status_{st}": status_counts.get(st, 0) for st in STATUSES},
        "lr": s.sched.get_last_lr()[0],
        "time_generate": t1 - t0, "time_grade": t2 - t1, "time_train": t3 - t2, "time_sync": t4 - t3,
        "time_total": t4 - t0,
    }


def _evaluate(s: Loop, step: int) -> None:
    if not s.data.eval:
        return
    t0 = time.perf_counter()
    row, recs = evaluate(s.engine, s.pool, s.data.eval, s.data.eval_prompts, s.eval_settings)
    row = {"step": step, **row, "seconds": round(time.perf_counter() - t0, 2)}
    append_jsonl(s.run.evals, [row])
    s.run.write_samples(f"eval_{step:05d}", recs)
    s.tb.add_scalar("eval/greedy", row["greedy"]["mean"], step)
    s.tb.add_scalar("eval/pass@1", row["pass_at_k"]["1"]["mean"], step)
    s.log(f"eval step {step}: greedy {row['greedy']['mean']:.3f}  pass@1 {row['pass_at_k']['1']['mean']:.3f}")


def _checkpoint(s: Loop, step: int) -> None:
    t0 = time.perf_counter()
    s.run.save_checkpoint({"step": step, "policy": s.policy.state_dict(), "optimizer": s.opt.state_dict(),
                           "scheduler": s.sched.state_dict(), "cursor": s.cursor.consumed, "rng": _capture_rng()})
    s.log(f"checkpoint after step {step} ({time.perf_counter() - t0:.1f}s)")


class _NoBoard:
    def add_scalar(self, *a, **k) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


def _capture_rng() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def _restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def _chunks(idx: list[int], size: int) -> list[list[int]]:
    return [idx[i : i + size] for i in range(0, len(idx), size)]


def update_policy(cfg: TrainConfig, policy, ref, opt, sched, rolls: list, adv: torch.Tensor, keep: torch.Tensor,
                  step: int) -> dict:
    """Mini-batched policy-gradient update. Non-kept samples carry no gradient and are not forwarded.

    Mini-batches: `mini_batches` equal slices of the shuffled rollout batch (filtering happens inside
    each), or, with `mini_batch_size` m, the paper's schedule: the kept samples only, cut into slices
    of m, so k kept samples take ceil(k / m) optimizer steps. `cfg.precision` must be resolved
    (fp32 | bf16): bf16 runs the matmuls under autocast. With one mini-batch the old log-probs are the
    current ones, so the on-policy loss -A log pi is used (the clipped surrogate's gradient at ratio 1,
    and a value that means something); with several, PPO's clipped surrogate against log-probs
    computed once before the first optimizer step.
    """
    if cfg.precision not in ("fp32", "bf16"):
        raise ValueError(f"update_policy needs a resolved precision (fp32 | bf16), got {cfg.precision!r}")
    bf16 = cfg.precision == "bf16"
    temperature = cfg.temperature if cfg.scale_logits and cfg.temperature > 0 else 1.0
    B = len(rolls)
    order = torch.randperm(B, generator=torch.Generator().manual_seed(mix_seed(cfg.seed, step))).tolist()
    if cfg.mini_batch_size:
        mbs = _chunks([i for i in order if keep[i]], cfg.mini_batch_size)
    else:
        mbs = _chunks(order, B // cfg.mini_batches)
    resp_mask = torch.zeros((B, max(len(r.response_ids) for r in rolls)), dtype=torch.bool)
    for b, r in enumerate(rolls):
        resp_mask[b, : len(r.response_ids)] = True
    # A zero advantage (GRPO on a group that is all right or all wrong) is a zero gradient: such samples,
    # like filtered ones, are never forwarded unless an entropy/KL term still needs them. Micro-batches
    # are length-sorted: far less padding, same sum (the loss is additive over samples).
    needs = [bool(keep[i]) and (adv[i] != 0 or bool(cfg.entropy_coef) or bool(cfg.kl_coef)) for i in range(B)]
    length = lambda i: len(rolls[i].prompt_ids) + len(rolls[i].response_ids)
    forward = lambda model, ch, **kw: response_logprobs(model, [rolls[i].prompt_ids for i in ch],
                                                        [rolls[i].response_ids for i in ch], temperature, bf16, **kw)
    old: dict[int, torch.Tensor] = {}
    multi = len(mbs) > 1  # the policy moves between mini-batches: the ratio to the sampling policy matters
    if multi:
        with torch.no_grad():
            for ch in _chunks(sorted((i for i in range(B) if needs[i]), key=length), cfg.micro_batch_size):
                lp, _, _ = forward(policy, ch)
                for j, i in enumerate(ch):
                    old[i] = lp[j, : len(rolls[i].response_ids)]
    stats = {"loss": 0.0, "grad_norm": 0.0, "clip_frac": 0.0, "ratio_mean": 0.0, "approx_kl": 0.0,
             "entropy_kept": 0.0, "kl_ref": 0.0, "optimizer_steps": 0, "skipped_minibatches": 0}
    n_tok = 0
    for mb in mbs:
        mb_t = torch.tensor(mb)
        denom = loss_denominator(resp_mask[mb_t], keep[mb_t], cfg.loss_agg, cfg.loss_norm)
        todo = sorted((i for i in mb if needs[i]), key=length)  # the denominator above counted them all
        if not todo:
            stats["skipped_minibatches"] += 1  # nothing kept: no gradient, no optimizer step
            continue
        opt.zero_grad(set_to_none=True)
        for ch in _chunks(todo, cfg.micro_batch_size):
            lp, mask, ent = forward(policy, ch, entropy_grad=cfg.entropy_coef > 0)
            a = adv[ch].to(lp.device)
            nt = int(mask.sum())
            if multi:
                o = torch.zeros_like(lp)
                for j, i in enumerate(ch):
                    o[j, : len(rolls[i].response_ids)] = old[i]
                loss, st = policy_loss(lp, o, a, mask, keep[ch], cfg.clip_eps, cfg.loss_agg, denom)
                stats["clip_frac"] += st.clip_frac * nt
                stats["ratio_mean"] += st.ratio_mean * nt
                stats["approx_kl"] += st.approx_kl * nt
            else:
                loss = aggregate(pg_loss(lp, a), mask, cfg.loss_agg, denom)
                stats["ratio_mean"] += nt  # old = current: ratio 1, nothing clipped, no drift
            if cfg.entropy_coef > 0:
                loss = loss - cfg.entropy_coef * aggregate(ent, mask, cfg.loss_agg, denom)
            if ref is not None:
                with torch.no_grad():
                    rlp, _, _ = forward(ref, ch)
                k3 = kl_k3(lp, rlp)
                loss = loss + cfg.kl_coef * aggregate(k3, mask, cfg.loss_agg, denom)
                stats["kl_ref"] += float(masked_sum(k3.detach(), mask))
            loss.backward()
            stats["loss"] += float(loss.detach())
            stats["entropy_kept"] += float(ent.detach().sum())
            n_tok += nt
        gn = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
        stats["grad_norm"] = max(stats["grad_norm"], float(gn)) if math.isfinite(float(gn)) else float("nan")
        opt.step()
        sched.step()
        stats["optimizer_steps"] += 1
    for k in ("clip_frac", "ratio_mean", "approx_kl", "entropy_kept", "kl_ref"):
        stats[k] = stats[k] / n_tok if n_tok else 0.0
    stats["loss"] /= max(1, stats["optimizer_steps"])
    stats["tokens_trained"] = n_tok
    return stats
