"""The static engine's matrix products (core.matmul): oneDNN's, where torch has it, equal torch's own ops within
the rounding of a sum's order, for every shape and precision the sampler sends them."""

import contextlib

import pytest
import torch
import torch.nn.functional as F

from rlvr_utils.core import matmul


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("rows, k, n", [(1, 128, 384), (37, 128, 289), (704, 352, 128), (5, 256, 768)])
def test_products_equal_torchs_own(dtype, tol, rows, k, n):
    g = torch.Generator().manual_seed(rows * k + n)
    x, w = torch.randn(rows, k, generator=g).to(dtype), (torch.randn(n, k, generator=g) / k**0.5).to(dtype)
    res = torch.randn(rows, n, generator=g).to(dtype)
    exact = x.double() @ w.double().t()
    for got, want in [(matmul.linear(x, w), exact), (matmul.linear_add(x, w, res), exact + res.double())]:
        assert got.dtype == dtype and got.shape == (rows, n)
        torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)


def test_a_strided_input_and_a_batch_of_rows():
    """The sampler hands the vocabulary product a strided slice (the last position of each prompt) and the
    prefill hands (prompts, positions, hidden)."""
    x, w = torch.randn(4, 9, 64), torch.randn(50, 64)
    torch.testing.assert_close(matmul.linear(x[:, -1], w), F.linear(x[:, -1], w), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(matmul.linear(x, w), F.linear(x, w), rtol=1e-5, atol=1e-5)


def test_onednn_is_used_where_torch_has_it():
    """torch's CPU wheels ship oneDNN: if this fails, the static engine has fallen back to MKL's GEMM (half the
    rate on AMD CPUs) and docs/performance.md's numbers no longer describe it."""
    assert matmul.onednn() == torch.backends.mkldnn.is_available()
    assert matmul.onednn()


@pytest.mark.parametrize("bias", [False, True])
def test_linears_give_torchs_outputs_and_gradients(bias):
    """Inside `linears()`, a model's fp32 layers run in oneDNN forward and backward: the same outputs and
    gradients (inputs, weights, bias) as torch's own, within fp32 rounding."""
    g = torch.Generator().manual_seed(1)
    layer = torch.nn.Linear(96, 200, bias=bias)
    x = torch.randn(3, 50, 96, generator=g)
    outs = []
    for ctx in (matmul.linears, torch.enable_grad):
        layer.zero_grad()
        xi = x.clone().requires_grad_()
        with ctx():
            y = layer(xi)
        assert (y.grad_fn.name() == "_LinearBackward") == (ctx is matmul.linears)  # the oneDNN one, or torch's
        (y * torch.arange(200.0)).sum().backward()  # a gradient that differs per output unit
        outs.append([y.detach(), xi.grad, layer.weight.grad] + ([layer.bias.grad] if bias else []))
    for got, want in zip(*outs):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_linears_leave_autocast_and_other_dtypes_to_torch():
    """Under bf16 autocast (precision=bf16) or with bf16 weights, F.linear is torch's, as without the context."""
    layer, x = torch.nn.Linear(64, 32), torch.randn(8, 64)
    with matmul.linears(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
    with matmul.linears():
        assert layer.to(torch.bfloat16)(x.to(torch.bfloat16)).grad_fn.name() != "_LinearBackward"
    assert isinstance(matmul.linears("cuda"), contextlib.nullcontext)  # a GPU model's operations are not intercepted
