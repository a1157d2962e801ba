"""The static engine's matrix products (core.matmul): oneDNN's, where torch has it, equal torch's own ops within
the rounding of a sum's order, for every shape and precision the sampler sends them."""

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
