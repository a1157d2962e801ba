"""The objective axis of the study: who is kept and with what advantage, and the policy loss.

Each objective maps per-sample binary correctness (and group ids, for GRPO) to an advantage and a
keep mask. Adding one is a function and a decorator.

Normalisation (`loss_norm`): the loss is a sum over kept samples' tokens divided by a denominator
computed over the whole mini-batch, so gradient accumulation is exact.
- `all` (default): the denominator counts every sample (tokens for token_mean, sequences for
  seq_mean), kept or not. A kept sample's gradient weight is then the same under PSR, NSR and
  REINFORCE, and PSR + NSR = REINFORCE exactly; the update shrinks when few samples are kept.
- `kept`: only kept samples count, so the update has the same size whatever the filter kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

AdvFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]
OBJECTIVES: dict[str, AdvFn] = {}


def register(name: str):
    def deco(fn: AdvFn) -> AdvFn:
        OBJECTIVES[name] = fn
        return fn

    return deco


@register("psr")
def psr(correct: torch.Tensor, groups: torch.Tensor, **_) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive sample reinforcement: correct samples only, advantage +1."""
    return torch.ones(len(correct)), correct.clone()


@register("nsr")
def nsr(correct: torch.Tensor, groups: torch.Tensor, **_) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative sample reinforcement: incorrect samples only, advantage -1."""
    return -torch.ones(len(correct)), ~correct


@register("w_reinforce")
def w_reinforce(correct: torch.Tensor, groups: torch.Tensor, lam: float = 0.1, **_):
    """All samples: +lam for correct, -1 for incorrect."""
    return torch.where(correct, lam, -1.0).float(), torch.ones_like(correct)


@register("reinforce")
def reinforce(correct: torch.Tensor, groups: torch.Tensor, **_):
    """All samples, +1 / -1: PSR + NSR."""
    return torch.where(correct, 1.0, -1.0).float(), torch.ones_like(correct)


@register("grpo")
def grpo(correct: torch.Tensor, groups: torch.Tensor, scale_std: bool = True, eps: float = 1e-6, **_):
    """Reward (1/0) minus the group mean, optionally divided by the group std (unbiased, as GRPO)."""
    r = correct.float()
    adv = torch.zeros_like(r)
    for g in groups.unique():
        m = groups == g
        a = r[m] - r[m].mean()
        if scale_std and m.sum() > 1:
            a = a / (r[m].std() + eps)
        adv[m] = a
    return adv, torch.ones_like(correct)


def advantages(name: str, correct: torch.Tensor, groups: torch.Tensor, lam: float = 0.1,
               grpo_scale_std: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}")
    adv, keep = OBJECTIVES[name](correct.bool(), groups, lam=lam, scale_std=grpo_scale_std)
    return adv.float(), keep.bool()


def loss_denominator(mask: torch.Tensor, keep: torch.Tensor, agg: str, norm: str) -> float:
    """Denominator over a whole mini-batch ([B, T] token mask, [B] keep) for exact accumulation."""
    rows = keep if norm == "kept" else torch.ones_like(keep)
    if norm not in ("all", "kept"):
        raise ValueError(f"unknown loss_norm {norm!r}; known: all, kept")
    if agg == "token_mean":
        d = mask[rows].sum()
    elif agg == "seq_mean":
        d = rows.sum()
    else:
        raise ValueError(f"unknown loss_agg {agg!r}; known: token_mean, seq_mean")
    return max(float(d), 1.0)


@dataclass
class LossStats:
    clip_frac: float
    ratio_mean: float
    approx_kl: float


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                keep: torch.Tensor, clip_eps: float, agg: str, denom: float) -> tuple[torch.Tensor, LossStats]:
    """PPO clipped surrogate summed over kept samples' tokens and divided by `denom`.

    logp, old_logp, mask: [B, T] (response tokens only); adv, keep: [B]. With old_logp equal to
    logp (one mini-batch per rollout batch) the ratio is 1 and the clip never acts.
    """
    m = mask.float() * keep.float()[:, None]
    ratio = torch.exp(logp - old_logp)
    a = adv[:, None]
    surr = torch.minimum(ratio * a, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * a)
    per_tok = -surr * m
    if agg == "token_mean":
        loss = per_tok.sum() / denom
    elif agg == "seq_mean":
        lens = mask.float().sum(-1).clamp(min=1)
        loss = (per_tok.sum(-1) / lens).sum() / denom
    else:
        raise ValueError(f"unknown loss_agg {agg!r}; known: token_mean, seq_mean")
    with torch.no_grad():
        n = m.sum().clamp(min=1)
        clipped = ((ratio - 1).abs() > clip_eps).float() * m
        stats = LossStats(
            clip_frac=float(clipped.sum() / n),
            ratio_mean=float((ratio * m).sum() / n),
            approx_kl=float(((old_logp - logp) * m).sum() / n),
        )
    return loss, stats
