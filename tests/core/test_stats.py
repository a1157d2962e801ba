"""Statistics primitives against brute force and by hand."""

import math

import pytest

from rlvr_utils.core.stats import seed_ci


def test_seed_ci_is_t_based():
    m, lo, hi = seed_ci([0.1, 0.2, 0.3])
    assert m == pytest.approx(0.2)
    assert hi - m == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)  # t(0.975, 2 dof), not 1.96
    assert math.isnan(seed_ci([0.5])[1])


def test_the_reported_k_leaves_at_least_two_samples_per_draw():
    from rlvr_utils.core.stats import reported_k

    assert reported_k([1, 2, 4, 8, 16, 32], 32) == 16  # pass@32 from 32 samples is "any of 32": not reported
    assert reported_k(["1", "4", "16"], 20) == 4 and reported_k([1, 4, 16], float("nan")) == 16  # n unknown: largest
    assert reported_k([8], 4) == 8  # no k fits: the largest evaluated
