"""Statistics primitives against brute force and by hand."""

import math

import pytest

from rlvr_utils.stats import seed_ci


def test_seed_ci_is_t_based():
    m, lo, hi = seed_ci([0.1, 0.2, 0.3])
    assert m == pytest.approx(0.2)
    assert hi - m == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)  # t(0.975, 2 dof), not 1.96
    assert math.isnan(seed_ci([0.5])[1])
