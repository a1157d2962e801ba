"""The update: a rollout batch with advantages -> mini-batched, micro-batched policy-gradient steps.

Mini-batches are `mini_batches` equal slices of the shuffled rollout batch (filtering happens inside
each), or, with `mini_batch_size` m, the paper's schedule: the kept samples only, cut into slices of
m, so k kept samples take ceil(k / m) optimizer steps, a last slice of p < m samples weighted p / m.
With one mini-batch the old log-probs are the current ones, so the on-policy loss -A log pi is used
(the clipped surrogate's gradient at ratio 1, with a value that means something); with several, PPO's
clipped surrogate against log-probs computed once before the first optimizer step. Samples that carry
no gradient (filtered out, or a zero advantage with no entropy/KL term) are never forwarded;
micro-batches are length-sorted (far less padding, the same sum: the loss is additive over samples).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from .losses import (aggregate, kl_k3, loss_denominator, masked_sum, pg_loss, policy_loss, response_logprobs,
                     tis_weights)
from .models import load_policy
from .optim import make_optimizer
from .rollouts import mix_seed

STATS = ("loss", "grad_norm", "clip_frac", "ratio_mean", "approx_kl", "entropy_kept", "kl_ref", "logprob_mismatch_mean",
         "tis_weight_mean")
PER_TOKEN = ("clip_frac", "ratio_mean", "approx_kl", "entropy_kept", "kl_ref", "logprob_mismatch_mean", "tis_weight_mean")


def chunks(idx: list[int], size: int) -> list[list[int]]:
    return [idx[i : i + size] for i in range(0, len(idx), size)]


def minibatches(cfg, keep: torch.Tensor, step: int) -> list[list[int]]:
    """The sample indices of each mini-batch, shuffled with a per-step seed."""
    order = torch.randperm(len(keep), generator=torch.Generator().manual_seed(mix_seed(cfg.seed, step))).tolist()
    if cfg.mini_batch_size:
        return chunks([i for i in order if keep[i]], cfg.mini_batch_size)
    return chunks(order, len(keep) // cfg.mini_batches)


def update_policy(cfg, policy, ref, opt, sched, rolls: list, adv: torch.Tensor, keep: torch.Tensor, step: int) -> dict:
    """Train `policy` on `rolls` with advantages `adv` [B] and keep mask `keep` [B]; returns step stats.

    `cfg.precision` must be resolved (fp32 | bf16): bf16 runs the matmuls under autocast."""
    if cfg.precision not in ("fp32", "bf16"):
        raise ValueError(f"update_policy needs a resolved precision (fp32 | bf16), got {cfg.precision!r}")
    temperature = cfg.temperature if cfg.scale_logits and cfg.temperature > 0 else 1.0

    def forward(model, ch: list[int], t: float = temperature, **kw):
        return response_logprobs(model, [rolls[i].prompt_ids for i in ch], [rolls[i].response_ids for i in ch],
                                 t, cfg.precision == "bf16", **kw)

    B = len(rolls)
    mbs = minibatches(cfg, keep, step)
    resp_mask = torch.zeros((B, max(len(r.response_ids) for r in rolls)), dtype=torch.bool)
    for b, r in enumerate(rolls):
        resp_mask[b, : len(r.response_ids)] = True
    needs = [bool(keep[i]) and (adv[i] != 0 or bool(cfg.entropy_coef) or bool(cfg.kl_coef)) for i in range(B)]
    length = lambda i: len(rolls[i].prompt_ids) + len(rolls[i].response_ids)
    trained = sorted((i for i in range(B) if needs[i]), key=length)
    # several mini-batches: the policy moves between them, so the ratio to the sampling policy matters
    old = _old_logprobs(forward, policy, trained, rolls, cfg.micro_batch_size) if len(mbs) > 1 else None
    # the policy's own raw (T=1) log-probs of what it trains on, before any step, against the engine's: the proof
    # of the last weight sync, and what truncated importance sampling corrects. With one mini-batch at T=1 they
    # are the forward's own; otherwise one more forward (old's, where it is at T=1)
    pre = None if len(mbs) == 1 and temperature == 1.0 else old if temperature == 1.0 else \
        _old_logprobs(lambda m, ch: forward(m, ch, 1.0), policy, trained, rolls, cfg.micro_batch_size)
    stats = dict.fromkeys(STATS, 0.0) | {"optimizer_steps": 0, "skipped_minibatches": 0, "tokens_trained": 0,
                                         "logprob_mismatch_max": 0.0}
    for mb in mbs:
        denom = loss_denominator(resp_mask[mb], keep[mb], cfg.loss_agg, cfg.loss_norm)
        if cfg.mini_batch_size:  # verl weighs a partial last slice by its size (dp_actor: len(data) / mini-batch
            denom *= cfg.mini_batch_size / len(mb)  # size): 4 leftover samples are not a full step's worth
        todo = sorted((i for i in mb if needs[i]), key=length)  # the denominator above counted them all
        if not todo:
            stats["skipped_minibatches"] += 1  # nothing kept: no gradient, no optimizer step
            continue
        opt.zero_grad(set_to_none=True)
        for ch in chunks(todo, cfg.micro_batch_size):
            _micro_batch(cfg, forward, policy, ref, ch, adv, keep, old, pre, rolls, denom, stats)
        gn = float(torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm))
        stats["grad_norm"] = max(stats["grad_norm"], gn) if math.isfinite(gn) else float("nan")
        opt.step()
        sched.step()
        stats["optimizer_steps"] += 1
    opt.zero_grad(set_to_none=True)  # gradients (4 bytes a parameter) must not stay live through sampling
    n_tok = stats["tokens_trained"]
    for k in PER_TOKEN:
        stats[k] = stats[k] / n_tok if n_tok else 0.0
    stats["loss"] /= max(1, stats["optimizer_steps"])
    return stats


def _old_logprobs(forward, policy, idx: list[int], rolls: list, micro: int) -> dict[int, torch.Tensor]:
    """The sampling policy's log-probs of each sample's response, before the first optimizer step."""
    old = {}
    with torch.no_grad():
        for ch in chunks(idx, micro):
            lp, _, _ = forward(policy, ch)
            for j, i in enumerate(ch):
                old[i] = lp[j, : len(rolls[i].response_ids)]
    return old


def _stack(rows: dict[int, torch.Tensor] | list, ch: list[int], like: torch.Tensor) -> torch.Tensor:
    """Per-sample token rows (a dict of tensors, or the rollouts' lists) for micro-batch `ch`, padded like `like`."""
    out = torch.zeros_like(like)
    for j, i in enumerate(ch):
        r = rows[i] if isinstance(rows, dict) else torch.tensor(rows[i].logprobs, dtype=like.dtype)
        out[j, : len(r)] = r.to(like.device)
    return out


def _micro_batch(cfg, forward, policy, ref, ch: list[int], adv, keep, old, pre, rolls, denom: float, stats: dict) -> None:
    """Forward and backward one micro-batch (gradients accumulate); its sums go into `stats`."""
    lp, mask, ent = forward(policy, ch, entropy_grad=cfg.entropy_coef > 0)
    a = adv[ch].to(lp.device)
    nt = int(mask.sum())
    own = lp.detach() if pre is None else _stack(pre, ch, lp)
    gap = ((own - _stack(rolls, ch, lp)) * mask).abs()
    stats["logprob_mismatch_mean"] += float(gap.sum())
    stats["logprob_mismatch_max"] = max(stats["logprob_mismatch_max"], float(gap.max()))
    w = tis_weights(own, _stack(rolls, ch, lp), cfg.tis_cap) if cfg.tis_cap else None
    if w is not None:
        stats["tis_weight_mean"] += float((w * mask).sum())
    if old is not None:
        loss, st = policy_loss(lp, _stack(old, ch, lp), a, mask, keep[ch].to(lp.device), cfg.clip_eps, cfg.loss_agg,
                               denom, weights=w)
        stats["clip_frac"] += st.clip_frac * nt
        stats["ratio_mean"] += st.ratio_mean * nt
        stats["approx_kl"] += st.approx_kl * nt
    else:
        loss = aggregate(pg_loss(lp, a, w), mask, cfg.loss_agg, denom)
        stats["ratio_mean"] += nt  # old = current: ratio 1, nothing clipped, no drift
    if cfg.entropy_coef > 0:
        loss = loss - cfg.entropy_coef * aggregate(ent, mask, cfg.loss_agg, denom)
    if ref is not None and cfg.kl_coef > 0:
        with torch.no_grad():
            rlp, _, _ = forward(ref, ch)
        k3 = kl_k3(lp, rlp)
        loss = loss + cfg.kl_coef * aggregate(k3, mask, cfg.loss_agg, denom)
        stats["kl_ref"] += float(masked_sum(k3.detach(), mask))
    loss.backward()
    stats["loss"] += float(loss.detach())
    stats["entropy_kept"] += float(ent.detach().sum())
    stats["tokens_trained"] += nt


def build_learner(cfg, model_path: str) -> tuple[Any, Any, torch.optim.Optimizer, Any]:
    """The policy (fp32 master weights on `cfg.device`), a frozen copy of it (for the KL loss, kl_coef > 0, and
    for the KL to the initial policy a run logs, track_kl; else None), the optimizer (`optim`) and the warm-up
    schedule.
    `cfg.device` must be resolved."""
    policy = load_policy(model_path, device=cfg.device)
    if cfg.gradient_checkpointing:
        policy.gradient_checkpointing_enable()
    policy.train()
    policy.config.use_cache = False
    ref = copy.deepcopy(policy).eval().requires_grad_(False) if cfg.kl_coef > 0 or cfg.track_kl else None
    opt, sched = make_optimizer(cfg, policy.parameters())
    return policy, ref, opt, sched


def kl_to_init(cfg, ref, rolls: list) -> dict:
    """How far the policy has moved: KL(pi_t || pi_0) on the step's own samples (drawn from pi_t), per token by
    k3 of the initial policy's log-probs (`ref`, a forward at T=1) against the engine's (pi_t's own), and per
    sequence by k1 (the sum of log-ratios: unbiased where sampling is at T=1)."""
    idx = sorted(range(len(rolls)), key=lambda i: len(rolls[i].prompt_ids) + len(rolls[i].response_ids))
    k3_sum = k1_sum = 0.0
    n_tok = 0
    with torch.no_grad():
        for ch in chunks(idx, max(cfg.micro_batch_size, 16)):
            rlp, mask, _ = response_logprobs(ref, [rolls[i].prompt_ids for i in ch], [rolls[i].response_ids for i in ch],
                                             1.0, cfg.precision == "bf16")
            now = _stack(rolls, ch, rlp)
            k3_sum += float(masked_sum(kl_k3(now, rlp, clamp=None), mask))
            k1_sum += float(masked_sum(now - rlp, mask))
            n_tok += int(mask.sum())
    return {"kl_to_init": k3_sum / max(n_tok, 1), "kl_to_init_seq": k1_sum / len(rolls)}

