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

from .errors import OneLineError
from .losses import LossSettings, kl_k3, loss_denominator, masked_sum, microbatch_loss, response_logprobs
from .models import load_policy
from .optim import make_optimizer
from .rollouts import mix_seed

STATS = ("loss", "grad_norm", "clip_frac", "ratio_mean", "approx_kl", "entropy_kept", "kl_ref", "logprob_mismatch_mean",
         "tis_weight_mean")
PER_TOKEN = ("clip_frac", "ratio_mean", "approx_kl", "entropy_kept", "kl_ref", "logprob_mismatch_mean", "tis_weight_mean")


def chunks(idx: list[int], size: int) -> list[list[int]]:
    return [idx[i : i + size] for i in range(0, len(idx), size)]


def micro_batches(idx: list[int], lengths: list[int], size: int, tokens: int = 0) -> list[list[int]]:
    """Samples `idx` (sorted by length) cut into micro-batches: `size` samples each, or with `tokens` > 0 as many as
    fit that budget of padded tokens (samples x the longest; a longer sample alone), so short samples share a
    forward and long ones do not pad each other."""
    if not tokens:
        return chunks(idx, size)
    out: list[list[int]] = []
    for i in idx:
        if out and (len(out[-1]) + 1) * max(lengths[i], max(lengths[j] for j in out[-1])) <= tokens:
            out[-1].append(i)
        else:
            out.append([i])
    return out


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
    lengths = [len(r.prompt_ids) + len(r.response_ids) for r in rolls]
    cut = lambda idx: micro_batches(sorted(idx, key=lengths.__getitem__), lengths, cfg.micro_batch_size,  # noqa: E731
                                    cfg.micro_batch_tokens)

    def forward(model, ch: list[int], t: float = temperature, **kw):
        return response_logprobs(model, [rolls[i].prompt_ids for i in ch], [rolls[i].response_ids for i in ch],
                                 t, cfg.precision == "bf16", **kw)

    B = len(rolls)
    mbs = minibatches(cfg, keep, step)
    resp_mask = torch.zeros((B, max(len(r.response_ids) for r in rolls)), dtype=torch.bool)
    for b, r in enumerate(rolls):
        resp_mask[b, : len(r.response_ids)] = True
    needs = [bool(keep[i]) and (adv[i] != 0 or bool(cfg.entropy_coef) or bool(cfg.kl_coef)) for i in range(B)]
    trained = [i for i in range(B) if needs[i]]
    # several mini-batches: the policy moves between them, so the ratio to the sampling policy matters
    old = _old_logprobs(forward, policy, cut(trained), rolls) if len(mbs) > 1 else None
    # the policy's own raw (T=1) log-probs of what it trains on, before any step, against the engine's: the proof
    # of the last weight sync, and what truncated importance sampling corrects. With one mini-batch at T=1 they
    # are the forward's own; otherwise one more forward (old's, where it is at T=1)
    pre = None if len(mbs) == 1 and temperature == 1.0 else old if temperature == 1.0 else \
        _old_logprobs(lambda m, ch: forward(m, ch, 1.0), policy, cut(trained), rolls)
    stats = dict.fromkeys(STATS, 0.0) | {"optimizer_steps": 0, "skipped_minibatches": 0, "tokens_trained": 0,
                                         "logprob_mismatch_max": 0.0}
    settings = LossSettings.of(cfg)
    for mb in mbs:
        denom = loss_denominator(resp_mask[mb], keep[mb], cfg.loss_agg, cfg.loss_norm)
        if cfg.mini_batch_size:  # verl weighs a partial last slice by its size (dp_actor: len(data) / mini-batch
            denom *= cfg.mini_batch_size / len(mb)  # size): 4 leftover samples are not a full step's worth
        todo = [i for i in mb if needs[i]]  # the denominator above counted them all
        if not todo:
            stats["skipped_minibatches"] += 1  # nothing kept: no gradient, no optimizer step
            continue
        opt.zero_grad(set_to_none=True)
        for ch in cut(todo):
            lp, mask, ent = forward(policy, ch, entropy_grad=cfg.entropy_coef > 0)
            ref_lp = None
            if ref is not None and cfg.kl_coef > 0:
                with torch.no_grad():
                    ref_lp = forward(ref, ch)[0]
            loss, sums = microbatch_loss(lp, mask, adv[ch].to(lp.device), denom, settings, _stack(rolls, ch, lp),
                                         None if old is None else _stack(old, ch, lp),
                                         None if pre is None else _stack(pre, ch, lp), ent, ref_lp)
            loss.backward()
            _accumulate(stats, sums)
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


def _accumulate(stats: dict, sums: dict) -> None:
    """Add one micro-batch's statistics (`losses.microbatch_loss`) into the step's."""
    for k, v in sums.items():
        stats[k] = max(stats[k], v) if k.endswith("_max") else stats[k] + (int(v) if k == "tokens_trained" else v)


def _old_logprobs(forward, policy, batches: list[list[int]], rolls: list) -> dict[int, torch.Tensor]:
    """The sampling policy's log-probs of each sample's response, before the first optimizer step."""
    old = {}
    with torch.no_grad():
        for ch in batches:
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


# The engine's and the policy's raw log-probs of the trained tokens, |difference| averaged over them, that a working
# weight sync stays under: fp32 engines agree with the policy to kernel rounding (~1e-4 here); bf16 ones (vLLM,
# the HF engine's bf16 copy) to bf16 rounding (~0.01 on the family's rungs and SmolLM2, tests/test_vllm.py). A
# sync that failed (the engine serving stale, partial or garbled weights) shows as a gap of a nat or more.
SYNC_BOUNDS = {"fp32": 0.01, "bf16": 0.1}


class SyncMismatch(OneLineError):
    """The engine samples from other weights than the policy has."""


def check_sync(stats: dict, precision: str) -> None:
    """Stop a run whose engine and policy disagree beyond `SYNC_BOUNDS[precision]` (an update's statistics)."""
    bound, mean = SYNC_BOUNDS[precision], stats["logprob_mismatch_mean"]
    if mean > bound:
        raise SyncMismatch(
            f"weight sync check: the engine's log-probs differ from the policy's by {mean:.4g} a token on average "
            f"(max {stats['logprob_mismatch_max']:.4g}) over {stats['tokens_trained']} trained tokens, above the "
            f"bound {bound} for {precision}: the engine is not sampling from the policy's weights (a weight sync "
            "that failed); sync_guard_steps=0 turns this check off")


def build_learner(cfg, model_path: str) -> tuple[Any, Any, torch.optim.Optimizer, Any]:
    """The policy (fp32 master weights on `cfg.device`), a frozen copy of it (for the KL loss, kl_coef > 0, and
    for the KL to the initial policy a run logs, track_kl; else None; in `ref_precision`), the optimizer (`optim`) and the warm-up
    schedule.
    `cfg.device` must be resolved."""
    policy = load_policy(model_path, device=cfg.device)
    if cfg.gradient_checkpointing:
        policy.gradient_checkpointing_enable()
    policy.train()
    policy.config.use_cache = False
    ref = None
    if cfg.kl_coef > 0 or cfg.track_kl:
        ref = copy.deepcopy(policy).eval().requires_grad_(False)
        if cfg.ref_precision == "bf16":  # half the memory; under bf16 autocast its matmuls see the same weights
            ref = ref.to(torch.bfloat16)
    opt, sched = make_optimizer(cfg, policy.parameters())
    return policy, ref, opt, sched


def kl_to_init(cfg, ref, rolls: list) -> dict:
    """How far the policy has moved: KL(pi_t || pi_0) on the step's own samples (drawn from pi_t), per token by
    k3 of the initial policy's log-probs (`ref`, a forward at T=1) against the engine's (pi_t's own), and per
    sequence by k1 (the sum of log-ratios: unbiased where sampling is at T=1)."""
    lengths = [len(r.prompt_ids) + len(r.response_ids) for r in rolls]
    idx = sorted(range(len(rolls)), key=lengths.__getitem__)
    k3_sum = k1_sum = 0.0
    n_tok = 0
    with torch.no_grad():
        for ch in micro_batches(idx, lengths, max(cfg.micro_batch_size, 16), cfg.micro_batch_tokens):
            rlp, mask, _ = response_logprobs(ref, [rolls[i].prompt_ids for i in ch], [rolls[i].response_ids for i in ch],
                                             1.0, cfg.precision == "bf16")
            now = _stack(rolls, ch, rlp)
            k3_sum += float(masked_sum(kl_k3(now, rlp, clamp=None), mask))
            k1_sum += float(masked_sum(now - rlp, mask))
            n_tok += int(mask.sum())
    return {"kl_to_init": k3_sum / max(n_tok, 1), "kl_to_init_seq": k1_sum / len(rolls)}

