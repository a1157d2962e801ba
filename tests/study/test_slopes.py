"""Slopes over the rungs' skill and the rung-pair table: a planted slope recovered, and the table's multiplicity."""

import numpy as np
import pandas as pd
import pytest

from rlvr_utils.study.slopes import empirical_logit, pair_table, slope, slope_weights, to_array


def planted(rng, x, beta, B=4, S=3, P=40, sd_build=0.02, sd_seed=0.01, sd_prob=0.05, sd_e=0.1):
    R = len(x)
    # a problem's contrast is shared across rungs (problems crossed with everything), plus a problem x slope part
    prob = rng.normal(0, sd_prob, (1, 1, 1, P)) + rng.normal(0, sd_prob / 2, (1, 1, 1, P)) * np.asarray(x)[:, None, None, None]
    return (beta * np.asarray(x)[:, None, None, None] + prob + rng.normal(0, sd_build, (R, B, 1, 1))
            + rng.normal(0, sd_seed, (R, B, S, 1)) + rng.normal(0, sd_e, (R, B, S, P)))


def test_slope_weights_are_least_squares():
    x = np.array([0.05, 0.09, 0.16, 0.22, 0.48])
    y = 0.3 - 0.07 * x
    assert slope_weights(x) @ y == pytest.approx(-0.07)
    with pytest.raises(ValueError, match="different skills"):
        slope_weights([0.1, 0.1])


def test_a_planted_slope_is_recovered_at_the_nominal_rate():
    rng = np.random.default_rng(0)
    x = [0.05, 0.09, 0.16, 0.22, 0.48]
    hits, ests = 0, []
    for _ in range(200):
        c = slope(x, planted(rng, x, beta=0.07))
        ests.append(c.est)
        hits += c.lo <= 0.07 <= c.hi
    assert abs(np.mean(ests) - 0.07) < 3 * np.std(ests) / np.sqrt(len(ests))
    assert 0.90 <= hits / 200 <= 0.99, hits / 200


def test_a_zero_slope_is_not_found_and_the_logit_scale_is_finite():
    x = [0.05, 0.2, 0.5]
    c = slope(x, planted(np.random.default_rng(3), x, beta=0.0, B=5, P=80))
    assert c.lo < 0 < c.hi
    v = empirical_logit(np.array([0, 16, 32]), 32)
    assert np.isfinite(v).all() and v[1] == pytest.approx(0.0) and v[0] == pytest.approx(-v[2])


def test_the_pair_table_states_its_multiplicity():
    x = [0.05, 0.1, 0.3, 0.5]
    Y = planted(np.random.default_rng(5), x, beta=0.2)
    t, note = pair_table(["a", "b", "c", "d"], Y, goal=0.02)
    assert len(t) == 6 and "6 rung pairs" in note and "Bonferroni" in note
    assert ((t["hi_bonf"] - t["lo_bonf"]) > (t["hi"] - t["lo"])).all()
    assert t.loc[(t.low == "a") & (t.high == "d"), "answer"].item() == "yes (+)"


def test_to_array_keeps_the_balanced_part():
    rows = [(r, b, s, p, r * 10 + b + s / 10 + p / 100) for r in (1, 2) for b in (0, 1, 2) for s in (0, 1)
            for p in range(5) if not (r == 2 and b == 2)]
    long = pd.DataFrame(rows, columns=["rung", "build", "seed", "problem", "y"])
    labels, Y = to_array(long, "y")
    assert labels == [1, 2] and Y.shape == (2, 2, 2, 5)
    assert Y[1, 1, 1, 3] == pytest.approx(20 + 1 + 0.1 + 0.03)
