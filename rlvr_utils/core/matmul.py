"""fp32 matrix products on a CPU through oneDNN's linear (the kernel torch's compiler emits for CPUs), not the BLAS call
behind `F.linear`: the static engine's, and the trainer's forward and backward (`linears`). torch's CPU wheel links
MKL, whose GEMM runs its AVX2 code on AMD CPUs; oneDNN picks its kernel by instruction set, so on a CPU with
full-width AVX-512 (Zen 5) it is 2.2-2.4x faster at the family's shapes (docs/performance.md). Its post-op also
carries the residual add, which on these small shapes costs about what a matrix product does (its SiLU and multiply
post-ops were no faster than torch's own ops). Results differ from `F.linear`'s in the order of their sums only
(fp32 rounding, as between two BLAS). Without oneDNN: torch's ops."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_dnn = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None


def onednn() -> bool:
    """Whether the products below run in oneDNN."""
    return _dnn is not None


def _ok(x: torch.Tensor) -> bool:
    # fp32 only: torch's own bf16 product already takes oneDNN where the CPU has bf16 kernels, and falls back
    # where it has none (an AVX2-only CPU), where oneDNN's op would fail
    return _dnn is not None and x.dtype == torch.float32 and x.is_cpu


def _mm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """oneDNN's x @ w.T (+ b), no post-op; x may be strided (oneDNN reads it so)."""
    return _dnn(x, w, b, "none", [None], "")


def linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x @ w.T: x (..., in), w (out, in)."""
    return _mm(x.contiguous(), w) if _ok(x) else F.linear(x, w)


def linear_add(x: torch.Tensor, w: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """residual + x @ w.T, residual (N, out)."""
    return _dnn.binary(x.contiguous(), residual, w, None, "add") if _ok(x) else torch.addmm(residual, x, w.t())


class _Linear(torch.autograd.Function):
    """y = x @ w.T (+ b), x (..., in), w (out, in), and its gradients: g @ w and g.T @ x, each a oneDNN product."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.bias = b is not None
        return _mm(x.contiguous(), w, b)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, w = ctx.saved_tensors
        g2, x2 = g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1])
        gx = _mm(g.contiguous(), w.t().contiguous()) if ctx.needs_input_grad[0] else None
        gw = _mm(g2.t(), x2.t()) if ctx.needs_input_grad[1] else None  # transposed views, not copies
        return gx, gw, g2.sum(0) if ctx.bias and ctx.needs_input_grad[2] else None


def _linear_args(input, weight, bias=None):  # F.linear's signature
    return input, weight, bias


class _Linears(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, w, b = _linear_args(*args, **kwargs)
            if _ok(x) and w.dtype == x.dtype and not torch.is_autocast_enabled("cpu"):
                return _Linear.apply(x, w, b)
        return func(*args, **kwargs)


def linears(device: torch.device | str = "cpu") -> contextlib.AbstractContextManager:
    """A context in which every fp32 `F.linear` on the CPU (a model's layers, forward and backward) runs in oneDNN;
    anything else (autocast, bf16 weights) as before. For a model on another `device`, no context at all (it
    would only add a Python call to each of its operations)."""
    return _Linears() if _dnn is not None and torch.device(device).type == "cpu" else contextlib.nullcontext()


@contextlib.contextmanager
def without_onednn():
    """torch's own products instead, inside this context (what bench/onednn.py compares against)."""
    global _dnn
    saved, _dnn = _dnn, None
    try:
        yield
    finally:
        _dnn = saved
