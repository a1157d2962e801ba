"""Builds as a random effect (builds, seeds within builds, problems crossed): against statsmodels' REML fit, a
planted build component recovered, the interval's coverage, and the projection to other designs."""

import numpy as np
import pandas as pd
import pytest

from rlvr_utils.study.crossed import crossed_mean
from rlvr_utils.study.nested import components_table, nested_mean, nested_projected, nested_sizing

TRUE = dict(build=0.04, seed=0.01, problem=0.05, build_problem=0.02, resid=0.10)


def simulate(rng, B, S, P, mean=0.0, **v):
    v = {**TRUE, **v}
    sd = {k: np.sqrt(x) for k, x in v.items()}
    return (mean + rng.normal(0, sd["build"], (B, 1, 1)) + rng.normal(0, sd["seed"], (B, S, 1))
            + rng.normal(0, sd["problem"], (1, 1, P)) + rng.normal(0, sd["build_problem"], (B, 1, P))
            + rng.normal(0, sd["resid"], (B, S, P)))


def test_it_agrees_with_a_mixed_model_fit_by_statsmodels():
    import statsmodels.formula.api as smf

    B, S, P = 5, 3, 24
    Y = simulate(np.random.default_rng(7), B, S, P, mean=0.3, build=0.2)
    c = nested_mean(Y)
    assert min(c.var_build, c.var_seed, c.var_problem, c.var_build_problem) > 0  # REML = ANOVA only then
    rows = [(b, b * S + s, p, b * P + p, Y[b, s, p]) for b in range(B) for s in range(S) for p in range(P)]
    df = pd.DataFrame(rows, columns=["build", "seed", "prob", "bp", "y"])
    fit = smf.mixedlm("y ~ 1", df, groups=np.ones(len(df)), re_formula="0",
                      vc_formula={"build": "0 + C(build)", "seed": "0 + C(seed)", "prob": "0 + C(prob)",
                                  "bp": "0 + C(bp)"}).fit(reml=True)
    vc = dict(zip(fit.model.exog_vc.names, fit.vcomp))
    assert fit.fe_params["Intercept"] == pytest.approx(c.est)
    assert fit.bse["Intercept"] == pytest.approx(c.se, rel=2e-3)
    for name, mine in (("build", c.var_build), ("seed", c.var_seed), ("prob", c.var_problem), ("bp", c.var_build_problem)):
        assert vc[name] == pytest.approx(mine, rel=2e-3), name
    assert fit.scale == pytest.approx(c.var_resid, rel=2e-3)


def test_a_planted_build_component_is_recovered_without_bias():
    rng = np.random.default_rng(1)
    est = np.array([[getattr(nested_mean(simulate(rng, 6, 4, 30)), f"var_{k}") for k in TRUE] for _ in range(300)])
    for k, m, sem in zip(TRUE, est.mean(0), est.std(0) / np.sqrt(len(est))):
        assert abs(m - TRUE[k]) < 4 * sem, (k, m, TRUE[k])
    # and with no build component, one build's seeds alone (crossed_mean) would have been the interval's whole story
    assert abs(est[:, 0].mean() - 0.04) < 0.01


def test_the_interval_covers_the_truth_at_its_nominal_rate_and_one_build_per_rung_would_not():
    rng = np.random.default_rng(11)
    hits = one_build = 0
    for _ in range(400):
        Y = simulate(rng, 6, 3, 40, mean=0.02)
        c = nested_mean(Y)
        hits += c.lo <= 0.02 <= c.hi
        k = crossed_mean(Y[0])  # a study of one build: the build's own deviation is in no interval
        one_build += k.lo <= 0.02 <= k.hi
    assert 0.92 <= hits / 400 <= 0.98, hits / 400
    assert one_build / 400 < 0.8, one_build / 400


def test_one_build_gives_no_interval_and_one_seed_per_build_still_gives_one():
    rng = np.random.default_rng(2)
    c1 = nested_mean(simulate(rng, 1, 5, 20))
    assert np.isnan(c1.se) and np.isnan(c1.var_build) and c1.var_seed == c1.var_seed
    c2 = nested_mean(simulate(rng, 5, 1, 20))
    assert c2.se > 0 and np.isnan(c2.var_seed)
    with pytest.raises(ValueError, match="builds x seeds x problems"):
        nested_mean(np.zeros((2, 2)))


def test_projection_reproduces_the_design_it_was_estimated_on_and_shrinks_with_builds():
    c = nested_mean(simulate(np.random.default_rng(4), 4, 3, 50))
    se, df = nested_projected(c, 4, 3, 50)
    assert se == pytest.approx(c.se) and df == pytest.approx(c.df)
    t = nested_sizing(c, (3, 6, 12), (2, 4), (50, 200))
    assert len(t) == 12 and set(t.columns) >= {"builds", "seeds", "problems", "cells", "mde", "mde_lo", "mde_hi"}
    by_b = t[(t.seeds == 4) & (t.problems == 200)].sort_values("builds")["mde"].to_numpy()
    assert (np.diff(by_b) < 0).all()
    shares = components_table(c)["share_of_var_mean"]
    assert shares.sum() == pytest.approx(1.0)
