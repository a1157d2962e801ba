"""Picking each row's next token from its logits, for the static engine: temperature, top-p, min_tokens (EOS
masked) and greedy rows in one batch, with a counter-based random stream per sample (a hash of its seed and the
step), so a sample's tokens depend on its own seed only, never on what else shares its batch or how it is chunked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .rollouts import SamplingConfig

_M64 = (1 << 64) - 1


def _s64(c: int) -> int:
    """An unsigned 64-bit constant as the signed int64 torch holds (its arithmetic wraps modulo 2^64)."""
    return c - (1 << 64) if c >= 1 << 63 else c


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    return (z >> k) & ((1 << (64 - k)) - 1)  # a logical shift of int64


def uniforms(seeds: torch.Tensor, step: int) -> torch.Tensor:
    """One uniform in [0, 1) per row, a multiple of 2^-24 (exact in fp32), from (its seed, step): splitmix64's
    finalizer over a Weyl sequence, so each sample has its own stream whatever else shares its batch (a torch
    generator is one stream for a whole batch)."""
    z = seeds * _s64(0xD1B54A32D192ED03) + _s64((step + 1) * 0x9E3779B97F4A7C15 & _M64)
    z = (z ^ _shr(z, 30)) * _s64(0xBF58476D1CE4E5B9)
    z = (z ^ _shr(z, 27)) * _s64(0x94D049BB133111EB)
    z = z ^ _shr(z, 31)
    return _shr(z, 40).float() * 2.0**-24


@dataclass
class Rows:
    """Per-row sampling settings as tensors (one row per sequence being decoded)."""

    temperature: torch.Tensor  # 0 = greedy
    top_p: torch.Tensor
    min_tokens: torch.Tensor  # int64
    max_tokens: torch.Tensor  # int64
    seed: torch.Tensor  # int64

    @classmethod
    def of(cls, sps: Sequence[SamplingConfig], seeds: Sequence[int]) -> "Rows":
        return cls(torch.tensor([s.temperature for s in sps]), torch.tensor([s.top_p for s in sps]),
                   torch.tensor([s.min_tokens for s in sps]), torch.tensor([s.max_tokens for s in sps]),
                   torch.tensor(list(seeds), dtype=torch.long))

    def take(self, idx: torch.Tensor) -> "Rows":
        return Rows(*(getattr(self, f)[idx] for f in ("temperature", "top_p", "min_tokens", "max_tokens", "seed")))


def pick(logits: torch.Tensor, rows: Rows, step: int, eos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(token, its raw log-prob) per row: EOS masked before min_tokens, then greedy where temperature is 0, else
    inverse-CDF sampling of softmax(logits / T), restricted to the top-p nucleus where top_p < 1 (the HF
    engine's rule: the smallest prefix of the sorted probabilities reaching top_p). The log-prob is the raw
    model's, log_softmax(logits) at T = 1, as every engine reports it."""
    raw = torch.log_softmax(logits, -1)
    blocked = rows.min_tokens > step
    if bool(blocked.any()):
        logits = logits.clone()
        logits[blocked.nonzero()[:, :1], eos[None]] = float("-inf")
    greedy = rows.temperature == 0
    if bool((rows.temperature == 1).all()) and not bool(blocked.any()):
        probs = raw.exp()  # T = 1 everywhere (the study's sampling): the raw distribution itself
    else:
        probs = torch.softmax(logits / torch.where(greedy, 1.0, rows.temperature).float()[:, None], -1)
    u = uniforms(rows.seed, step)[:, None]
    tok = _inverse_cdf(probs, u)
    nucleus = (rows.top_p < 1) & ~greedy
    if bool(nucleus.any()):
        r = nucleus.nonzero().squeeze(-1)
        sp, si = probs[r].sort(-1, descending=True)
        sp = sp * (sp.cumsum(-1) - sp < rows.top_p[r, None])
        tok[r] = si.gather(-1, _inverse_cdf(sp, u[r])[:, None]).squeeze(-1)
    if bool(greedy.any()):
        tok = torch.where(greedy, logits.argmax(-1), tok)
    return tok, raw.gather(-1, tok[:, None]).squeeze(-1)


def _inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The first index whose cumulative probability exceeds u times the total: never a zero-probability one
    (u < 1, and the CDF is flat over those)."""
    cdf = probs.cumsum(-1)
    return torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(-1).clamp(max=probs.shape[-1] - 1)
