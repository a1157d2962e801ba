"""The RL loop: sample prompts -> rollouts -> grade -> objective -> micro-batched update -> sync.

The only orchestrator, meant to be read top to bottom: `train` -> `_step` -> `_evaluate` -> `_setup`.
What it calls lives elsewhere: data in `data/`, who is kept with what advantage in `core/objectives.py`,
the update in `core/update.py` (its maths in `core/losses.py`), what a run shares with its siblings in
`train/builds.py`, and every file it writes goes through `core/runs.RunDir`.
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .builds import shared_base_eval
from ..core.config import TrainConfig
from ..data.sources import Cursor, Prepared
from ..core.evaluate import EvalSettings, batch_stats
from .evaluation import evaluation
from ..core.files import crash_point
from ..core.grading import GradingPool
from ..core.hardware import cuda_memory, dtype_name
from .preflight import check_inputs, preflight
from ..core.engines import make_engine
from ..core.rollouts import Engine
from .dynamic import draw
from ..core.runs import RunDir, capture_rng, exit_with_parent, restore_rng, sample_record
from ..core.update import build_learner, check_sync, kl_to_init, update_policy


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False, log: Callable[[str], None] = print,
          stop_after: int | None = None, allow_new_build: bool | None = None) -> RunDir:
    """Run (or resume) one training run into `run_dir`. `stop_after`: return after that many steps in this
    call (a test hook: a kill right after a checkpoint). `allow_new_build`: start on weights none of the
    sibling runs of this model ran on (`builds.check_sibling_builds`); None: as a grid executor says."""
    exit_with_parent()
    check_inputs(cfg)
    run = RunDir(run_dir)
    if not run.claim(cfg, resume, log):
        return run
    fresh, started = not run.config.exists(), False  # after the claim: a run that never stepped starts afresh
    try:
        t_start = time.perf_counter()
        with _setup(cfg, run, resume, log, allow_new_build) as s:
            run.start()
            started = True
            if s.start == 0:
                _evaluate(s, 0)
            for step in range(s.start + 1, cfg.steps + 1):
                log(step_line(cfg, step, _step(s, step)))
                if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps:
                    _evaluate(s, step)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps:
                    _checkpoint(s, step)
                    if stop_after is not None and step >= stop_after:
                        return run
        run.set_status("done", seconds=round(time.perf_counter() - t_start, 1))
        if not cfg.keep_checkpoint:
            shutil.rmtree(run.checkpoints, ignore_errors=True)
    except BaseException as e:
        if fresh or started:  # a resume refused during its set-up (damage, other weights) leaves the run as it was
            run.stopped(e)
        raise
    finally:
        run.unlock()
    return run


def step_line(cfg: TrainConfig, step: int, m: dict) -> str:
    """A step's one log line; a step whose objective kept nothing to train on says so (the weights did not move)."""
    head = f"step {step}/{cfg.steps}: reward {m['reward_mean']:.3f} kept {m['kept']}/{m['samples']}"
    if not m.get("optimizer_steps"):
        return (f"{head}: nothing to train on ({cfg.objective} kept no sample that carries a gradient), the weights "
                f"did not move ({m['time_total']:.1f}s)")
    return f"{head} loss {m['loss']:.4f} len {m['response_len_mean']:.0f} ({m['time_total']:.1f}s)"


def _step(s: Loop, step: int) -> dict:
    """One RL step: rollouts of the next prompts, grades, advantages, the update, the weight sync."""
    cfg = s.cfg
    t0 = time.perf_counter()
    d = draw(cfg, s.engine, s.pool, s.data, s.cursor, step)  # one batch, or until `dynamic_kept` are kept
    rolls, grades, adv, keep = d.rolls, d.grades, d.adv, d.keep
    crash_point("sampling", step)
    mem = s.memory | cuda_memory(cfg.device, "after_sampling")  # on CUDA: where the memory plan is tested
    s.memory = {}
    probs = [s.data.train[d.idx[r.prompt_index]] for r in rolls]
    t2 = time.perf_counter()
    moved = kl_to_init(cfg, s.ref, rolls) if cfg.track_kl else {}  # before the update: rolls are pi_t's samples
    upd = update_policy(cfg, s.policy, s.ref, s.opt, s.sched, rolls, adv, keep, step)
    if step - s.start <= cfg.sync_guard_steps:  # the first steps of this process: its engine's load and syncs
        check_sync(upd, cfg.precision)
    crash_point("update", step)
    mem |= cuda_memory(cfg.device, "after_update")
    t3 = time.perf_counter()
    if upd["optimizer_steps"]:
        s.engine.sync_weights(s.policy)
    mem |= cuda_memory(cfg.device, "after_sync")
    t4 = time.perf_counter()

    s.totals["samples_trained_total"] += int(keep.sum())
    s.totals["tokens_trained_total"] += upd["tokens_trained"]
    m = {"step": step, **batch_stats(rolls, grades, keep, cfg.rollouts_per_prompt), **upd, **moved, **s.totals, **mem,
         **d.info, "lr": s.sched.get_last_lr()[0], "time_train": t3 - t2,
         "time_sync": t4 - t3, "time_total": t4 - t0}
    s.run.write_step(m, [sample_record(p, r, g, step=step, advantage=float(a), kept=bool(k))
                         for r, p, g, a, k in zip(rolls, probs, grades, adv, keep)])
    for k, v in m.items():
        if isinstance(v, (int, float)) and k != "step":
            s.tb.add_scalar(f"train/{k}", v, step)
    return m


def _evaluate(s: Loop, step: int) -> None:
    if not s.data.eval:
        return
    fresh = lambda: evaluation(s)  # noqa: E731  (greedy, pass@k, the extra protocols, the guessing floor)
    if step == 0:  # the base: a sibling cell may already have sampled it with this seed and these settings
        row = shared_base_eval(s.run, fresh, s.log)
    else:
        t0 = time.perf_counter()
        row = s.run.write_eval(step, *fresh(), time.perf_counter() - t0)
    s.tb.add_scalar("eval/greedy", row["greedy"]["mean"], step)
    s.tb.add_scalar("eval/pass@1", row["pass_at_k"]["1"]["mean"], step)
    s.log(f"eval step {step}: greedy {row['greedy']['mean']:.3f}  pass@1 {row['pass_at_k']['1']['mean']:.3f}")


def _checkpoint(s: Loop, step: int) -> None:
    t0 = time.perf_counter()
    s.run.save_checkpoint({"step": step, "policy": s.policy.state_dict(), "optimizer": s.opt.state_dict(),
                           "scheduler": s.sched.state_dict(), "cursor": s.cursor.consumed, "rng": capture_rng()})
    s.log(f"checkpoint after step {step} ({time.perf_counter() - t0:.1f}s)")


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
    totals: dict = field(default_factory=dict)  # samples and tokens trained since step 1 (the movement's dose)
    memory: dict = field(default_factory=dict)  # CUDA memory at the engine's start, for the first step's row

    def __enter__(self) -> "Loop":
        return self

    def __exit__(self, *exc) -> None:
        self.tb.close()
        self.pool.close()
        self.engine.close()


def _setup(cfg: TrainConfig, run: RunDir, resume: bool, log: Callable[[str], None],
           allow_new_build: bool | None) -> Loop:
    """Everything the loop needs: what `preflight` checks and prepares before any weights load, then the
    learner (restored from the checkpoint on resume), the engine and the grader."""
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    cfg, model_path, tok, data = preflight(cfg, run, log, allow_new_build)
    policy, ref, opt, sched = build_learner(cfg, model_path)
    cursor = Cursor(len(data.train), cfg.seed)
    ck = run.load_checkpoint() if resume else None
    if ck is not None:
        for obj, key in ((policy, "policy"), (opt, "optimizer"), (sched, "scheduler")):
            obj.load_state_dict(ck[key])
        cursor.consumed = ck["cursor"]
        restore_rng(ck["rng"])
        log(f"resumed from checkpoint after step {ck['step']}")
    start = ck["step"] if ck else 0
    run.check_resumable(cfg, start)
    for cut in run.repair():  # a crash mid-append tears a journal's last line: cut it, redo that step
        log(f"repaired {cut}")
    run.truncate_after(start if start else -1)  # rows past the checkpoint are redone
    done = run.read_metrics()
    totals = {"samples_trained_total": sum(r.get("kept", 0) for r in done),
              "tokens_trained_total": sum(r.get("tokens_trained", 0) for r in done)}

    engine = make_engine(cfg.engine, model_path, policy=policy, tokenizer=tok, dtype=dtype_name(cfg.precision),
                         max_model_len=cfg.max_model_len, seed=cfg.seed, gpu_memory_utilization=cfg.vllm_gpu_memory,
                         sleep_mode=cfg.vllm_sleep, hf_batch_size=cfg.hf_batch_size)
    if start > 0:
        engine.sync_weights(policy)
    pool = GradingPool(workers=cfg.grade_workers, timeout=cfg.grade_timeout, policy=cfg.extraction)  # type: ignore[arg-type]
    es = EvalSettings(cfg.eval_samples, cfg.eval_temperature, cfg.eval_top_p, cfg.eval_length, cfg.eval_t1, cfg.seed)
    return Loop(cfg, run, data, policy, ref, opt, sched, cursor, engine, pool, run.board(purge_after=start, log=log),
                es, log, start, totals, cuda_memory(cfg.device, "engine_start"))
