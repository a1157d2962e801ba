"""The RL loop: sample prompts -> rollouts -> grade -> objective -> micro-batched update -> sync.

The only orchestrator, meant to be read top to bottom. What it calls lives elsewhere: data
preparation in `data.py`, who is kept with what advantage in `objectives.py`, the mini-batched update
in `update.py` (its maths in `losses.py`), and every file it writes goes through `runs.RunDir`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from transformers import AutoConfig

from .config import TrainConfig
from .data import Cursor, Prepared, prepare_data
from .evaluate import EvalSettings, base_eval_key, base_eval_lock, batch_stats, evaluate, find_base_eval
from .grading import GradingPool
from .hardware import check_plan, memory_plan, use_threads
from .hardware import resolve as resolve_hardware
from .models import fingerprint, load_policy, load_tokenizer, resolve_model
from .objectives import advantages, objective_kwargs
from .prompts import check_budget, context_length
from .rollouts import Engine, SamplingConfig, make_engine, mix_seed, resolve_engine
from .runs import (NEW_BUILD_ENV, RunDir, append_jsonl, capture_rng, exit_with_parent, provenance, restore_rng,
                   sample_record)
from .update import update_policy


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False,
          log: Callable[[str], None] = print, stop_after: int | None = None,
          allow_new_build: bool | None = None) -> RunDir:
    """Run (or resume) one training run into `run_dir`. `stop_after`: return after that many steps
    in this call (a test hook that simulates a kill right after a checkpoint). `allow_new_build`: start
    on weights none of the sibling runs of this model ran on (`_check_sibling_builds`); None: as a grid
    executor says (`NEW_BUILD_ENV`), else no."""
    exit_with_parent()
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
    run.lock()
    run.set_status("running", pid=os.getpid())
    try:
        _train(cfg, run, resume, log, stop_after, allow_new_build)
    except BaseException as e:
        run.set_status("failed", error=f"{type(e).__name__}: {e}"[:2000])
        raise
    finally:
        run.unlock()
    return run


def _train(cfg: TrainConfig, run: RunDir, resume: bool, log: Callable[[str], None], stop_after: int | None,
           allow_new_build: bool | None = None) -> None:
    t_start = time.perf_counter()
    s = _setup(cfg, run, resume, log, allow_new_build)
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


def _setup(cfg: TrainConfig, run: RunDir, resume: bool, log: Callable[[str], None],
           allow_new_build: bool | None = None) -> Loop:
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    model_path = resolve_model(cfg.model)
    saved_meta = json.loads(run.config.read_text()).get("_meta", {}) if run.config.exists() else {}
    weights = fingerprint(model_path)
    _check_same_weights(run, cfg.model, saved_meta.get("model_fingerprint"), weights)  # before data and weights load
    allow = os.environ.get(NEW_BUILD_ENV) == "1" if allow_new_build is None else allow_new_build
    other_builds = {} if run.config.exists() else _check_sibling_builds(run, cfg.model, model_path, weights, allow, log)
    check_budget([0] * cfg.max_prompt_tokens, max(cfg.max_tokens, cfg.eval_max_tokens), context_length(model_path),
                 "max_prompt_tokens")  # before any weights load
    tok = load_tokenizer(model_path)
    data = prepare_data(cfg, tok)
    threads = use_threads()  # the cores the grid's executor gave this cell (all, run alone)
    # a resumed run keeps the precision it started with: `auto` may resolve otherwise on another CPU kind
    saved_hw = saved_meta.get("hardware", {})
    hw = resolve_hardware(cfg.device, saved_hw.get("precision", cfg.precision) if cfg.precision == "auto" else cfg.precision)
    log(f"hardware: {hw}, {threads} CPU threads")
    plan = memory_plan(AutoConfig.from_pretrained(model_path), cfg, hw)
    log(str(plan))
    check_plan(plan)  # before any weights load
    if not run.config.exists():
        cfg.save(run.config, {**provenance(), "model_path": model_path, "model_fingerprint": weights,
                              "engine": resolve_engine(cfg.engine), "n_train": len(data.train),
                              "n_eval": len(data.eval), "dropped": data.dropped,
                              "hardware": {**hw.to_dict(), "threads": threads},
                              "memory_plan_gb": {k: round(v / 1e9, 3) for k, v in plan.parts.items()},
                              **({"other_builds": other_builds} if other_builds else {})})
    cfg = cfg.replace(device=hw.device, precision=hw.precision)

    policy, ref, opt, sched = build_learner(cfg, model_path)
    cursor = Cursor(len(data.train), cfg.seed)
    start = 0
    ck = run.load_checkpoint() if resume else None
    if ck is not None:
        policy.load_state_dict(ck["policy"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        cursor.consumed = ck["cursor"]
        restore_rng(ck["rng"])
        start = ck["step"]
        log(f"resumed from checkpoint after step {start}")
    run.truncate_after(start if start else -1)  # rows past the checkpoint are redone

    engine = make_engine(cfg.engine, model_path, policy=policy, tokenizer=tok, dtype=hw.dtype,
                         max_model_len=cfg.max_model_len, seed=cfg.seed, gpu_memory_utilization=cfg.vllm_gpu_memory,
                         sleep_mode=cfg.vllm_sleep)
    if start > 0:
        engine.sync_weights(policy)
    pool = GradingPool(workers=cfg.grade_workers, timeout=cfg.grade_timeout, policy=cfg.extraction)  # type: ignore[arg-type]
    tb = run.board(purge_after=start, log=log)
    es = EvalSettings(cfg.eval_samples, cfg.eval_temperature, cfg.eval_top_p, cfg.eval_length,
                      cfg.eval_t1, cfg.seed)
    return Loop(cfg, run, data, policy, ref, opt, sched, cursor, engine, pool, tb, es, log, start)


def _check_same_weights(run: RunDir, model: str, saved: str | None, now: str | None) -> None:
    """A resumed run must start from the weights it started from: a rung rebuilt on another machine keeps
    its name and path but not its bits, and its rows would then mix two models under one config."""
    if saved and now and saved != now:
        raise ValueError(f"{run.config}: this run started from {model!r} with weights {saved}, but {model!r} now "
                         f"resolves to weights {now} (rebuilt on another machine?). Its step-0 evaluation and "
                         f"checkpoints belong to the old weights: remove {run.path} to run it afresh on the new ones.")


def _check_sibling_builds(run: RunDir, model: str, path: str, now: str | None, allow: bool,
                          log: Callable[[str], None]) -> dict[str, list[str]]:
    """A new run's weights against those its siblings (same folder, same model) ran on: refused where none of
    them ran on these, unless `allow`. Returns the siblings' other builds, {fingerprint: runs}, for its config."""
    # A rung rebuilt on another CPU keeps its name and recipe but not its bits, nor always its prior: cells of
    # one rung would start from different models, and their comparisons would carry the difference.
    seen: dict[str, list[str]] = {}
    for other in sorted(run.path.parent.glob("*/config.json")):
        try:
            saved = json.loads(other.read_text())
        except (OSError, ValueError):
            continue  # mid-write or not a run
        fp = saved.get("_meta", {}).get("model_fingerprint") if isinstance(saved, dict) else None
        if other.parent != run.path and fp and _same_model(saved.get("model"), model):
            seen.setdefault(fp, []).append(other.parent.name)
    others = {fp: names for fp, names in seen.items() if fp != now}
    if now is None or not others:
        return {}
    ran = "; ".join(f"{fp} ({', '.join(names)})" for fp, names in others.items())
    msg = (f"{run.path}: {model!r} resolves to {path} with weights {now}, but runs of it beside this one ran on "
           f"other weights: {ran}. Rebuilt on another machine? Comparisons with them would carry the difference.")
    if now not in seen and not allow:
        raise ValueError(msg + f" Restore the old build at {path}, or pass --allow-new-build (`rlvr train` or "
                         f"`rlvr grid`) to go on; the run's config then names the other builds.")
    # once a build is among the siblings', mixing was chosen: later runs on it go on, and say so
    log("warning: " + msg + " Going on" + (f" (as {', '.join(seen[now])} did)." if now in seen else "."))
    return others


def _same_model(a: Any, b: str) -> bool:
    """One model under two names: a warm start's spec is compared by its recipe (its cache key)."""
    from .models import WARM_PREFIX
    from .warmstart import warmstart_from_spec

    if not isinstance(a, str):
        return False
    if a.startswith(WARM_PREFIX) and b.startswith(WARM_PREFIX):
        try:
            return warmstart_from_spec(a).key() == warmstart_from_spec(b).key()
        except ValueError:
            return a == b
    return a == b


def build_learner(cfg: TrainConfig, model_path: str) -> tuple[Any, Any, torch.optim.Optimizer, Any]:
    """The policy (fp32 master weights on `cfg.device`), its frozen reference (kl_coef > 0, else None),
    AdamW and the warm-up schedule. `cfg.device` must be resolved."""
    policy = load_policy(model_path, device=cfg.device)
    if cfg.gradient_checkpointing:
        policy.gradient_checkpointing_enable()
    policy.train()
    policy.config.use_cache = False
    ref = copy.deepcopy(policy).eval().requires_grad_(False) if cfg.kl_coef > 0 else None
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                            weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0)
    return policy, ref, opt, sched


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
    return {"step": step, **batch_stats(rolls, grades, keep, cfg.rollouts_per_prompt), **upd,
            "lr": s.sched.get_last_lr()[0], "time_generate": t1 - t0, "time_grade": t2 - t1, "time_train": t3 - t2,
            "time_sync": t4 - t3, "time_total": t4 - t0}


def _evaluate(s: Loop, step: int) -> None:
    if not s.data.eval:
        return
    key = base_eval_key(json.loads(s.run.config.read_text())) if step == 0 else None
    with base_eval_lock(s.run, key) if key else contextlib.nullcontext():
        t0 = time.perf_counter()
        found = find_base_eval(s.run, key) if key else None
        if found:  # a sibling cell already sampled this base with this seed and these settings
            row, recs, src = found
            row = {**{k: v for k, v in row.items() if k not in ("step", "seconds")}, "reused_from": src}
            s.log(f"eval step 0: reusing {src}'s (same model, seed and evaluation settings)")
        else:
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
                           "scheduler": s.sched.state_dict(), "cursor": s.cursor.consumed, "rng": capture_rng()})
    s.log(f"checkpoint after step {step} ({time.perf_counter() - t0:.1f}s)")


