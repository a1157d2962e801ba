"""The loss maths, as small functions with their shapes: what the trainer computes, and nothing else.

Shapes: B samples, T response positions (padded), V vocabulary. `mask` [B, T] is True at real
response tokens. Every function here is used by `update.update_policy`; none has a second copy. `microbatch_loss`
is the whole loss of one micro-batch, tensors in and (loss, statistics) out.

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

import itertools
from dataclasses import dataclass
from typing import Sequence

import torch

from . import matmul

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


LOGIT_ROWS = 256  # rows of [*, V] in fp32 at a time (up to twice that): ~0.15 GB a transient at V = 152k


def _row_chunks(flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
    # LOGIT_ROWS to 2 x LOGIT_ROWS - 1 rows each: never a 1-row tail, which torch's CPU sum would split
    # across threads (another rounding than the same row summed within a larger chunk)
    return flat.tensor_split(max(1, flat.shape[0] // LOGIT_ROWS))


def _scaled(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """A chunk of logits as fp32 (fp64 stays) at the temperature: a new tensor unless x is already so at T = 1."""
    z = x.to(torch.promote_types(x.dtype, torch.float32))
    return z / temperature if temperature != 1.0 else z


def _logprob_entropy(x: torch.Tensor, t: torch.Tensor, temperature: float) -> tuple[torch.Tensor, ...]:
    """One chunk: logits [r, V], targets [r] -> (log p(target), entropy, logsumexp), each [r], of softmax(x / T).
    The entropy is lse - sum(p z), the dot product by bmm: no [r, V] product is kept."""
    z = _scaled(x, temperature)
    lse = torch.logsumexp(z, -1)
    p = (z - lse[:, None]).exp_()
    ent = lse - torch.bmm(p[:, None, :], z[:, :, None]).view(-1)
    return z.gather(-1, t[:, None]).squeeze(-1) - lse, ent, lse


class SelectedLogprobs(torch.autograd.Function):
    """logits [N, V] (fp32 or bf16), targets [N] -> (log p(target) [N], entropy [N]) of softmax(logits / T).

    TRL's selective log-softmax and chunked entropy, fused: a chunk of rows at a time in fp32, so no
    [N, V] fp32 tensor is built beside the logits. Backward keeps only the logits and per-row logsumexp and
    entropy; the gradient, d log p_t / dz = onehot(t) - p and dH / dz = -p (log p + H), is formed a chunk
    at a time. With `consume` it is written into the logits' own storage (the caller owns them and needs
    them no more: the head's output), so one [N, V] tensor lives through the whole backward.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, temperature: float, consume: bool):
        rows = [_logprob_entropy(x, t, temperature) for x, t in zip(_row_chunks(logits), _row_chunks(targets))]
        lp, ent, lse = (torch.cat(c) for c in zip(*rows))
        ctx.save_for_backward(logits, targets, lse, ent)
        ctx.temperature, ctx.consume = temperature, consume and not logits.is_leaf
        ctx.set_materialize_grads(False)  # an output no loss uses (the entropy without a bonus) gets None, not zeros
        return lp, ent

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_lp: torch.Tensor | None, g_ent: torch.Tensor | None):
        logits, targets, lse, ent = ctx.saved_tensors
        T = ctx.temperature
        out = logits if ctx.consume else torch.empty_like(logits)
        g_lp = torch.zeros_like(lse) if g_lp is None else g_lp.to(lse.dtype)
        g_ent = None if g_ent is None else g_ent.to(lse.dtype)
        chunks = zip(*(_row_chunks(x) for x in (logits, targets, lse, ent, g_lp, out)),
                     _row_chunks(g_ent) if g_ent is not None else itertools.repeat(None))
        for x, t, s, h, gl, o, ge in chunks:
            z = _scaled(x, T)
            if ge is None:  # -p * g_lp
                g = (z - s[:, None]).exp_().mul_(-gl[:, None])
            else:  # -p * (g_lp + g_ent * (log p + H)), log p = z - lse: three [r, V] fp32 transients at most
                logp = z - s[:, None]
                p = logp.exp()
                g = logp.add_(h[:, None]).mul_(ge[:, None]).add_(gl[:, None]).mul_(p).neg_()
                del p
            g.scatter_add_(-1, t[:, None], gl[:, None])
            if T != 1.0:
                g.div_(T)
            o.copy_(g)
        return out, None, None, None


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                   entropy_grad: bool = False, consume: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [..., V], targets [...] -> (log p(target) [...], entropy [...]) of softmax(logits / temperature).

    The entropy carries a gradient only with `entropy_grad` (an entropy bonus) and grad enabled. `consume`:
    backward may overwrite `logits` with their gradient (`SelectedLogprobs`).
    """
    shape = targets.shape
    flat, tflat = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    if not (torch.is_grad_enabled() and logits.requires_grad):
        with torch.no_grad():
            rows = [_logprob_entropy(x, t, temperature)[:2] for x, t in zip(_row_chunks(flat), _row_chunks(tflat))]
        lp, ent = (torch.cat(c) for c in zip(*rows))
        return lp.view(shape), ent.view(shape)
    lp, ent = SelectedLogprobs.apply(flat, tflat, temperature, consume)
    return lp.view(shape), (ent if entropy_grad else ent.detach()).view(shape)


def response_logprobs(model, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]],
                      temperature: float = 1.0, bf16: bool = False, entropy_grad: bool = False,
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probs (and entropies) of B response token lists given their prompts, under a causal LM.

    Returns logp [B, T], mask [B, T], entropy [B, T] (zero at padding), T = the longest response. The vocabulary
    projection runs only at the N real response positions, padding removed: prompt-position and padding logits
    are never used, and over a 152k vocabulary they would be most of the forward's memory. With grad enabled
    the head's [N, V] output is the one vocabulary-sized tensor (`SelectedLogprobs` writes its gradient into
    it); without, the head runs a chunk of rows at a time. `bf16`: matmuls under autocast.
    """
    dev = next(model.parameters()).device
    seqs = [list(p) + list(r) for p, r in zip(prompts, responses)]
    B, L, T = len(seqs), max(len(s) for s in seqs), max(len(r) for r in responses)
    ids = torch.zeros((B, L), dtype=torch.long)
    attn = torch.zeros((B, L), dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.bool)
    for b, (r, s) in enumerate(zip(responses, seqs)):
        ids[b, : len(s)] = torch.tensor(s)
        attn[b, : len(s)] = 1
        mask[b, : len(r)] = True
    rows, col = mask.nonzero(as_tuple=True)  # row-major: the order of the responses' tokens concatenated
    pos = torch.tensor([len(p) for p in prompts])[rows] - 1 + col  # the position whose output predicts each token
    tgt = torch.tensor([t for r in responses for t in r], dtype=torch.long)
    ids, attn, mask, rows, pos, tgt = (x.to(dev) for x in (ids, attn, mask, rows, pos, tgt))
    base, head = getattr(model, model.base_model_prefix), model.get_output_embeddings()
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16), matmul.linears(dev):
        h = base(input_ids=ids, attention_mask=attn).last_hidden_state[rows, pos]  # [N, H]
        if torch.is_grad_enabled():
            lp, ent = token_logprobs(head(h), tgt, temperature, entropy_grad, consume=True)
        else:
            parts = [token_logprobs(head(x), t, temperature)
                     for x, t in zip(h.split(4 * LOGIT_ROWS), tgt.split(4 * LOGIT_ROWS))]
            lp, ent = (torch.cat(c) for c in zip(*parts))
    zero = torch.zeros((B, T), dtype=lp.dtype, device=dev)
    return zero.masked_scatter(mask, lp), mask, zero.masked_scatter(mask, ent)


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


@dataclass(frozen=True)
class LossSettings:
    """The loss's knobs (TrainConfig fields of the same names)."""

    loss_agg: str = "token_mean"
    clip_eps: float = 0.2
    entropy_coef: float = 0.0
    kl_coef: float = 0.0
    tis_cap: float = 0.0

    @classmethod
    def of(cls, cfg) -> "LossSettings":
        return cls(cfg.loss_agg, cfg.clip_eps, cfg.entropy_coef, cfg.kl_coef, cfg.tis_cap)


def microbatch_loss(logp: torch.Tensor, mask: torch.Tensor, adv: torch.Tensor, denom: float, s: LossSettings,
                    sampler_logp: torch.Tensor, old_logp: torch.Tensor | None = None, own_logp: torch.Tensor | None = None,
                    entropy: torch.Tensor | None = None, ref_logp: torch.Tensor | None = None,
                    ) -> tuple[torch.Tensor, dict[str, float]]:
    """One micro-batch of kept samples: tensors in, (loss to backward, its statistics) out.

    logp [B, T]: the policy's log-probs (with grad); mask [B, T]; adv [B]; denom: the whole mini-batch's
    (`loss_denominator`), so micro-batches add up exactly. sampler_logp [B, T]: the engine's log-probs of the
    same tokens. old_logp [B, T]: several mini-batches, PPO's clipped surrogate against them; None: one, the
    on-policy -A log pi. own_logp [B, T]: the policy's own T=1 log-probs before any optimizer step (default:
    logp), against the engine's: the proof of the weight sync, and what `tis_cap` corrects. entropy [B, T]
    (carrying a gradient for the bonus), ref_logp [B, T] (the KL loss, `kl_coef` > 0).
    The statistics are sums over real tokens (`tokens_trained` of them; `logprob_mismatch_max` a max), so a
    caller adds micro-batches and divides once.
    """
    own = logp.detach() if own_logp is None else own_logp
    nt = float(mask.sum())
    gap = ((own - sampler_logp) * mask).abs()
    w = tis_weights(own, sampler_logp, s.tis_cap) if s.tis_cap else None
    st = {"tokens_trained": nt, "logprob_mismatch_mean": float(gap.sum()), "logprob_mismatch_max": float(gap.max()),
          "tis_weight_mean": float((w * mask).sum()) if w is not None else 0.0,
          "clip_frac": 0.0, "ratio_mean": nt, "approx_kl": 0.0}  # on-policy: ratio 1, nothing clipped, no drift
    if old_logp is not None:
        every = torch.ones_like(adv, dtype=torch.bool)  # a micro-batch holds kept samples only
        loss, c = policy_loss(logp, old_logp, adv, mask, every, s.clip_eps, s.loss_agg, denom, w)
        st.update(clip_frac=c.clip_frac * nt, ratio_mean=c.ratio_mean * nt, approx_kl=c.approx_kl * nt)
    else:
        loss = aggregate(pg_loss(logp, adv, w), mask, s.loss_agg, denom)
    if entropy is not None and s.entropy_coef > 0:
        loss = loss - s.entropy_coef * aggregate(entropy, mask, s.loss_agg, denom)
    st["kl_ref"] = 0.0
    if ref_logp is not None and s.kl_coef > 0:
        k3 = kl_k3(logp, ref_logp)
        loss = loss + s.kl_coef * aggregate(k3, mask, s.loss_agg, denom)
        st["kl_ref"] = float(masked_sum(k3.detach(), mask))
    st["entropy_kept"] = float(masked_sum(entropy.detach(), mask)) if entropy is not None else 0.0
    st["loss"] = float(loss.detach())
    return loss, st


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
