"""Statistics primitives against brute force, a reference implementation (scipy) or by hand."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from rlvr_utils.core.stats import (NO_WIDTH, bootstrap_ci, fmt_interval, ks_for, pass_at_k, reported_k,
                                   seed_ci, seeds_else_problems, summarize, welch)


def test_seed_ci_is_t_based():
    m, lo, hi = seed_ci([0.1, 0.2, 0.3])
    assert m == pytest.approx(0.2)
    assert hi - m == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)  # t(0.975, 2 dof), not 1.96
    assert math.isnan(seed_ci([0.5])[1])


def test_seed_ci_matches_scipys_t_interval():
    rng = np.random.default_rng(3)
    for n, level in [(2, 0.95), (3, 0.95), (7, 0.9), (30, 0.99)]:
        v = rng.normal(0.3, 0.1, size=n)
        m, lo, hi = seed_ci(v, level)
        ref = stats.t.interval(level, n - 1, loc=v.mean(), scale=stats.sem(v))
        assert m == pytest.approx(v.mean()) and (lo, hi) == pytest.approx(ref, rel=1e-12)
    m, lo, hi = seed_ci([0.5])  # one seed: its value, and no spread to form an interval from
    assert m == 0.5 and math.isnan(lo) and math.isnan(hi)


def test_the_reported_k_leaves_at_least_two_samples_per_draw():
    assert reported_k([1, 2, 4, 8, 16, 32], 32) == 16  # pass@32 from 32 samples is "any of 32": not reported
    assert reported_k(["1", "4", "16"], 20) == 4 and reported_k([1, 4, 16], float("nan")) == 16  # n unknown: largest
    assert reported_k([8], 4) == 8  # no k fits: the largest evaluated


def test_reported_k_is_the_largest_k_with_two_samples_per_draw_by_brute_force():
    for n in range(1, 70):
        for ks in ([1, 2, 4, 8, 16, 32, 64], [3, 5, 9], [1], [2, 6]):
            fit = [k for k in ks if 2 * k <= n]
            assert reported_k(list(reversed(ks)), n) == (max(fit) if fit else max(ks)), (n, ks)


def test_ks_for_is_every_power_of_two_up_to_n():
    for n in range(0, 300):
        assert ks_for(n) == [k for k in range(1, n + 1) if k & (k - 1) == 0], n
    assert ks_for(16) == [1, 2, 4, 8, 16] and ks_for(15) == [1, 2, 4, 8]


def test_pass_at_k_is_the_share_of_k_subsets_with_a_correct_sample():
    # Chen et al.'s estimator is exactly P(a k-subset drawn without replacement from the n samples holds a
    # correct one): count the subsets
    for n in range(1, 9):
        for c in range(n + 1):
            samples = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(range(n), k))
                hit = sum(any(samples[i] for i in s) for s in subsets)
                assert pass_at_k(n, c, k) == pytest.approx(hit / len(subsets), abs=1e-12), (n, c, k)
    assert pass_at_k(16, 0, 16) == 0.0 and pass_at_k(16, 1, 16) == 1.0 and pass_at_k(16, 4, 1) == 0.25
    with pytest.raises(ValueError, match="k=5 > n=4"):
        pass_at_k(4, 1, 5)


def test_bootstrap_ci_covers_a_known_mean_about_95_times_in_100():
    # a percentile bootstrap of the mean of 60 draws from a known distribution (exponential, mean 2: skewed, as
    # per-problem pass rates are): over 400 independent samples its 95% interval holds the true mean close to 95%
    rng = np.random.default_rng(0)
    reps = 400
    covered = sum(lo <= 2.0 <= hi for lo, hi in (bootstrap_ci(rng.exponential(2.0, 60), iters=500, seed=i)
                                                  for i in range(reps)))
    # binomial SD at 95% over 400 is 1.1%; the percentile bootstrap undercovers a little at n=60
    assert 0.88 <= covered / reps <= 0.985
    # the interval is the resampled means' quantiles: a tighter interval at 80% lies inside the 95% one
    v = rng.exponential(2.0, 60)
    lo95, hi95 = bootstrap_ci(v, alpha=0.05)
    lo80, hi80 = bootstrap_ci(v, alpha=0.2)
    assert lo95 < lo80 < v.mean() < hi80 < hi95
    assert bootstrap_ci(v, seed=4) == bootstrap_ci(v, seed=4)  # seeded: a report reads the same twice


def test_bootstrap_ci_of_a_constant_has_no_width_and_of_nothing_is_nan():
    assert bootstrap_ci([0.25] * 10) == pytest.approx((0.25, 0.25))
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    s = summarize([0.0, 1.0, 1.0, 0.0])
    assert s["mean"] == 0.5 and s["n"] == 4 and 0.0 <= s["lo"] <= 0.5 <= s["hi"] <= 1.0
    assert math.isnan(summarize([])["mean"]) and summarize([])["n"] == 0


def test_welch_matches_scipys_welch_t_interval():
    rng = np.random.default_rng(1)
    for na, nb, level in [(3, 3, 0.95), (2, 5, 0.95), (6, 4, 0.9), (22, 22, 0.99)]:
        a, b = rng.normal(0.1, 0.05, na), rng.normal(0.0, 0.2, nb)
        w = welch({"hi": (1, a), "lo": (-1, b)}, level)
        ref = stats.ttest_ind(a, b, equal_var=False)
        assert w["est"] == pytest.approx(a.mean() - b.mean())
        assert w["df"] == pytest.approx(ref.df, rel=1e-10)
        assert (w["lo"], w["hi"]) == pytest.approx(tuple(ref.confidence_interval(level)), rel=1e-10)
        assert w["est"] / w["se"] == pytest.approx(ref.statistic, rel=1e-10)
        # the MDE at 80% power: the critical t plus t's 80% quantile, in standard errors
        t = stats.t.ppf((1 + level) / 2, ref.df)
        assert w["mde_80"] == pytest.approx((t + stats.t.ppf(0.8, ref.df)) * w["se"], rel=1e-10)
    # signs: a cell entered with -1 counts against; swapping the signs mirrors the interval
    w, m = welch({"hi": (1, a), "lo": (-1, b)}), welch({"hi": (-1, a), "lo": (1, b)})
    assert (m["est"], m["lo"], m["hi"]) == pytest.approx((-w["est"], -w["hi"], -w["lo"]))


def test_welch_refuses_a_cell_of_one_seed_and_seeds_that_agree():
    with pytest.raises(ValueError, match=">= 2 seeds"):
        welch({"hi": (1, np.array([0.1, 0.2])), "lo": (-1, np.array([0.3]))})
    with pytest.raises(ValueError, match="exactly the same amount"):
        welch({"hi": (1, np.array([0.1, 0.1])), "lo": (-1, np.array([0.3, 0.3]))})


def test_the_interval_rule_takes_seeds_where_they_differ_else_problems():
    per_problem = np.array([0.0, 0.25, 0.5, 0.5, 1.0, 0.0, 0.75, 0.25])
    asked = []

    def problems():
        asked.append(1)
        return per_problem

    # >= 2 seeds that differ: the t over seeds, and the per-problem records are never read
    iv = seeds_else_problems([0.1, 0.2, 0.4], problems)
    assert (iv.est, iv.lo, iv.hi) == pytest.approx(seed_ci([0.1, 0.2, 0.4])) and iv.over == "seeds" and iv.mark == ""
    assert not asked
    # one seed: a bootstrap over problems (of the per-problem values, not the seed's value)
    iv = seeds_else_problems([0.9], problems, iters=300)
    assert iv.over == "problems, one seed" and iv.mark == "*"
    assert (iv.est, iv.lo, iv.hi) == pytest.approx((per_problem.mean(), *bootstrap_ci(per_problem, iters=300)))
    # seeds that agree exactly have no width for a t: a bootstrap over problems too, marked apart
    iv = seeds_else_problems([0.2, 0.2, 0.2], problems)
    assert iv.over == "problems, seeds agree" and iv.mark == "†" and iv.lo < iv.est < iv.hi
    assert len(asked) == 2


def test_the_interval_rule_without_per_problem_records():
    def missing():
        raise KeyError("no per-problem evaluation samples")

    iv = seeds_else_problems([0.2, 0.4], missing)  # seeds suffice: the records are not needed
    assert iv.over == "seeds"
    iv = seeds_else_problems([0.3], missing)  # one seed and no records: its value, no interval, over "none"
    assert iv.est == 0.3 and iv.over == "none" and math.isnan(iv.lo) and math.isnan(iv.hi) and iv.mark == ""
    assert seeds_else_problems([], missing).over == "none" and math.isnan(seeds_else_problems([], missing).est)
    with pytest.raises(KeyError, match="no per-problem"):
        seeds_else_problems([0.3, 0.3], missing, missing="raise")


def test_fmt_interval_says_the_estimate_its_interval_or_why_there_is_none():
    assert fmt_interval(0.05, 0.01, 0.09) == "+0.050 [+0.010, +0.090]"
    assert fmt_interval(-0.1234, -0.2, 0.0) == "-0.123 [-0.200, +0.000]"
    assert fmt_interval(0.05, float("nan"), float("nan")) == "+0.050"  # no interval: the estimate alone
    assert fmt_interval(1.5, 1.0, 2.0, ".1f") == "+1.5 [+1.0, +2.0]"
    # seeds that agree exactly: the caller's words in place of a zero-width interval, only where asked for
    assert fmt_interval(0.2, 0.2, 0.2 + NO_WIDTH / 2, agree=" (seeds agree)") == "+0.200 (seeds agree)"
    assert fmt_interval(0.2, 0.2, 0.2) == "+0.200 [+0.200, +0.200]"
    assert fmt_interval(0.2, 0.19, 0.21, agree=" (seeds agree)") == "+0.200 [+0.190, +0.210]"


def test_stratified_first_takes_each_strata_first_ones_at_its_share():
    from rlvr_utils.core.stats import largest_remainder, stratified_first

    strata = ["a"] * 6 + ["b"] * 2
    assert stratified_first(strata, 4) == [0, 1, 2, 6] and stratified_first(strata, 9) == list(range(8))
    assert stratified_first(["b", "a", "b", "a"], 2) == [0, 1]  # in the list's order, whatever it is
    assert largest_remainder({"a": 205, "b": 51}, 32) == {"a": 26, "b": 6}  # remainders 0.63 and 0.38
    assert largest_remainder({"a": 1, "b": 1}, 1) == {"a": 1, "b": 0}  # a tie goes by name
