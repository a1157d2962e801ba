"""The loss maths, as small functions with their shapes: what the trainer computes, and nothing else.

Shapes: B samples, T response positions (padded), V vocabulary. `mask` [B, T] is True at real
response tokens. Every function here is used by `update.update_policy`; none has a second copy.

Normalisation (`loss_norm`): the loss is a sum over kept samples' tokens divided by a denominator
computed over the whole mini-batch, so gradient accumulation over micro-batches is exact.
- `all` (default): the denominator counts every sample (tokens for token_mean, sequences for
  seq_mean), kept or not. A kept sample's gradient weight is then the same under PSR, NSR and
  REINFORCE, and PSR + NSR = REINFORCE exactly; the gradient shrinks when few samples are kept. The step
  shrinks with it only under an optimizer whose step scales with the gradient (`optimizer=sgd`): AdamW divides
  the gradient's scale out, so its steps stay about lr per coordinate however few samples are kept.
- `kept`: only kept samples count, so the gradient has the same scale whatever the filter kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

AGGREGATIONS = ("token_mean", "seq_mean")
NORMALISATIONS = ("all", "kept")


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x, mask [B, T] -> scalar: the sum over real tokens."""
    return (x * mask).sum()


def masked_mean(x: torch.Tensor, mask: torch.Tensor, denom: float | None = None) -> torch.Tensor:
    """x, mask [B, T] -> scalar: the sum over real tokens divided by `denom` (default: their count)."""
    return masked_sum(x, mask) / (max(float(mask.sum()), 1.0) if denom is None else denom)


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, agg: str, denom: float) -> torch.Tensor:
    """per_token, mask [B, T] -> scalar. token_mean: sum of tokens / denom; seq_mean: each sequence's
    token mean, summed / denom (the original small study's per-sequence mean)."""
    if agg == "token_mean":
        return masked_sum(per_token, mask) / denom
    if agg == "seq_mean":
        lens = mask.float().sum(-1).clamp(min=1)
        return ((per_token * mask).sum(-1) / lens).sum() / denom
    raise ValueError(f"unknown loss_agg {agg!r}; known: {', '.join(AGGREGATIONS)}")


def loss_denominator(mask: torch.Tensor, keep: torch.Tensor, agg: str, norm: str) -> float:
    """mask [B, T], keep [B] over a whole mini-batch -> the denominator for exact accumulation."""
    if norm not in NORMALISATIONS:
        raise ValueError(f"unknown loss_norm {norm!r}; known: {', '.join(NORMALISATIONS)}")
    rows = keep if norm == "kept" else torch.ones_like(keep)
    if agg == "token_mean":
        d = mask[rows].sum()
    elif agg == "seq_mean":
        d = rows.sum()
    else:
        raise ValueError(f"unknown loss_agg {agg!r}; known: {', '.join(AGGREGATIONS)}")
    return max(float(d), 1.0)


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                   entropy_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [B, T, V], targets [B, T] -> (log p(target) [B, T], entropy [B, T]).

    Both are of softmax(logits / temperature): the distribution sampled from at that temperature.
    The entropy carries a gradient only with `entropy_grad` (an entropy bonus) and grad enabled.
    At 3072 tokens x 152k vocabulary each [B, T, V] fp32 copy is 1.9 GB a sample, so only log p's
    is kept for backward (`Entropy`) and none lives longer than it must.
    """
    z = logits.float()
    if temperature != 1.0:
        z = z / temperature
    logp_all = torch.log_softmax(z, -1)
    del z
    logp = logp_all.gather(-1, targets[..., None]).squeeze(-1)
    if entropy_grad and torch.is_grad_enabled():
        return logp, Entropy.apply(logp_all)
    return logp, entropy_of(logp_all.detach())


ENTROPY_ROWS = 512  # rows of [*, V] at a time (up to twice that): bounds the e^l * l transients to ~0.6 GB at V = 152k


def _row_chunks(flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
    # ENTROPY_ROWS to 2 x ENTROPY_ROWS - 1 rows each: never a 1-row tail, which torch's CPU sum would split
    # across threads (another rounding than the same row summed within a larger chunk)
    return flat.tensor_split(max(1, flat.shape[0] // ENTROPY_ROWS))


def entropy_of(logp_all: torch.Tensor) -> torch.Tensor:
    """log-probs [..., V] -> entropy -(e^l * l).sum(-1) [...], a chunk of rows at a time."""
    flat = logp_all.reshape(-1, logp_all.shape[-1])
    return torch.cat([-(x.exp() * x).sum(-1) for x in _row_chunks(flat)]).view(logp_all.shape[:-1])


class Entropy(torch.autograd.Function):
    """`entropy_of` with a gradient: dH/dl = -e^l (l + 1). It saves only l, which log_softmax keeps
    anyway; autograd of the plain formula would also keep e^l (one more [B, T, V] fp32 copy)."""

    @staticmethod
    def forward(ctx, logp_all: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logp_all)
        return entropy_of(logp_all)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        (logp_all,) = ctx.saved_tensors
        flat, gf = logp_all.reshape(-1, logp_all.shape[-1]), g.reshape(-1, 1)
        out = torch.empty_like(flat)
        for x, gx, o in zip(_row_chunks(flat), _row_chunks(gf), _row_chunks(out)):
            torch.mul(x.exp(), x + 1, out=o).mul_(-gx)
        return out.view_as(logp_all)


def response_logprobs(model, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]],
                      temperature: float = 1.0, bf16: bool = False, entropy_grad: bool = False,
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probs (and entropies) of B response token lists given their prompts, under a causal LM.

    Returns logp [B, T], mask [B, T], entropy [B, T] (zero at padding), T = the longest response. The vocabulary
    projection runs only at response positions: prompt-position logits are never used, and over a
    49k vocabulary they are most of the forward's FLOPs and memory. `bf16`: matmuls under autocast.
    """
    dev = next(model.parameters()).device
    seqs = [list(p) + list(r) for p, r in zip(prompts, responses)]
    B, L, T = len(seqs), max(len(s) for s in seqs), max(len(r) for r in responses)
    ids = torch.zeros((B, L), dtype=torch.long)
    attn = torch.zeros((B, L), dtype=torch.long)
    pos = torch.zeros((B, T), dtype=torch.long)  # the position whose output predicts each response token
    tgt = torch.zeros((B, T), dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.bool)
    for b, (p, r, s) in enumerate(zip(prompts, responses, seqs)):
        ids[b, : len(s)] = torch.tensor(s)
        attn[b, : len(s)] = 1
        P, R = len(p), len(r)
        pos[b, :R] = torch.arange(P - 1, P + R - 1)
        tgt[b, :R] = torch.tensor(list(r))
        mask[b, :R] = True
    ids, attn, pos, tgt, mask = (x.to(dev) for x in (ids, attn, pos, tgt, mask))
    base = getattr(model, model.base_model_prefix)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        h = base(input_ids=ids, attention_mask=attn).last_hidden_state
        h = h.gather(1, pos[..., None].expand(-1, -1, h.shape[-1]))
        logits = model.get_output_embeddings()(h)
    logp, ent = token_logprobs(logits, tgt, temperature, entropy_grad)
    return logp * mask, mask, ent * mask


def pg_loss(logp: torch.Tensor, adv: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """On-policy policy-gradient loss per token: -A * log pi (* w, per-token importance weights [B, T] such as
    `tis_weights`). logp [B, T], adv [B] -> [B, T].

    Its gradient equals the clipped surrogate's when old = current log-probs (ratio 1), and its
    value means something (the advantage-weighted negative log-likelihood)."""
    loss = -adv[:, None] * logp
    return loss if weights is None else loss * weights


def tis_weights(policy_logp: torch.Tensor, engine_logp: torch.Tensor, cap: float) -> torch.Tensor:
    """Truncated importance sampling (as TRL's vLLM path): per token min(pi_policy / pi_engine, cap), detached.
    The engine samples in its own precision (vLLM in bf16) while the loss assumes the policy sampled: the
    ratio undoes the gap, the cap bounds its variance. [B, T] log-probs of the sampled tokens -> [B, T]."""
    return torch.exp(policy_logp.detach() - engine_logp.detach()).clamp(max=cap)


@dataclass
class ClipStats:
    clip_frac: float   # share of tokens whose ratio left [1 - eps, 1 + eps]
    ratio_mean: float
    approx_kl: float   # mean (old - new) log-prob: the drift since sampling


def clipped_pg_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                    clip_eps: float, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, ClipStats]:
    """PPO's clipped surrogate per token: -min(r A, clip(r, 1-eps, 1+eps) A), r = exp(logp - old) (* w).

    logp, old_logp, mask [B, T]; adv [B] -> ([B, T] loss, stats over real tokens)."""
    ratio = torch.exp(logp - old_logp)
    a = adv[:, None]
    per_tok = -torch.minimum(ratio * a, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * a)
    if weights is not None:
        per_tok = per_tok * weights
    with torch.no_grad():
        m = mask.float()
        n = m.sum().clamp(min=1)
        stats = ClipStats(clip_frac=float((((ratio - 1).abs() > clip_eps).float() * m).sum() / n),
                          ratio_mean=float((ratio * m).sum() / n),
                          approx_kl=float(((old_logp - logp) * m).sum() / n))
    return per_tok, stats


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                keep: torch.Tensor, clip_eps: float, agg: str, denom: float,
                weights: torch.Tensor | None = None) -> tuple[torch.Tensor, ClipStats]:
    """The clipped surrogate over kept samples' tokens, aggregated and divided by `denom`.

    logp, old_logp, mask [B, T]; adv, keep [B]. With old_logp equal to logp (one mini-batch per
    rollout batch) the ratio is 1 and the clip never acts."""
    m = mask & keep[:, None]
    per_tok, stats = clipped_pg_loss(logp, old_logp, adv, m, clip_eps, weights)
    return aggregate(per_tok, m, agg, denom), stats


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor, clamp: float | None = 10.0) -> torch.Tensor:
    """Schulman's k3 estimate of KL(pi || ref) per token: exp(d) - d - 1 with d = ref - logp, >= 0.

    logp, ref_logp [B, T] -> [B, T]. `clamp` bounds d (verl's low_var_kl clamps the result to +-10)."""
    d = ref_logp - logp
    k3 = torch.exp(d) - d - 1
    return k3.clamp(-clamp, clamp) if clamp is not None else k3


def group_advantages(rewards: torch.Tensor, groups: torch.Tensor, scale_std: bool = True,
                     eps: float = 1e-6) -> torch.Tensor:
    """rewards [B] (real-valued), groups [B] (prompt ids) -> [B]: reward minus its group's mean,
    divided by the group's unbiased std (+ eps) when `scale_std` (GRPO) and the group has > 1 sample."""
    r = rewards.float()
    adv = torch.zeros_like(r)
    for g in groups.unique():
        m = groups == g
        a = r[m] - r[m].mean()
        if scale_std and m.sum() > 1:
            a = a / (r[m].std() + eps)
        adv[m] = a
    return adv
