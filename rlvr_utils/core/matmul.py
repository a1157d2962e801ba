"""The static engine's matrix products: oneDNN's linear (the kernel torch's compiler emits for CPUs), not the BLAS
call behind `F.linear`. torch's CPU wheel links MKL, whose GEMM runs its AVX2 code on AMD CPUs; oneDNN picks its
kernel by instruction set, so on a CPU with full-width AVX-512 (Zen 5) it is 2.2-2.4x faster at the family's
shapes (docs/performance.md). Its post-op also carries the residual add, which on these small shapes costs about
what a matrix product does (its SiLU and multiply post-ops were no faster than torch's own ops). Results differ from
`F.linear`'s in the order of their sums only (fp32 rounding, as between two BLAS). Without oneDNN: torch's ops."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_dnn = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None


def onednn() -> bool:
    """Whether the products below run in oneDNN."""
    return _dnn is not None


def _ok(x: torch.Tensor) -> bool:
    return _dnn is not None and x.dtype in (torch.float32, torch.bfloat16) and x.is_cpu


def linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x @ w.T: x (..., in), w (out, in)."""
    return _dnn(x.contiguous(), w, None, "none", [None], "") if _ok(x) else F.linear(x, w)


def linear_add(x: torch.Tensor, w: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """residual + x @ w.T, residual (N, out)."""
    return _dnn.binary(x.contiguous(), residual, w, None, "add") if _ok(x) else torch.addmm(residual, x, w.t())
