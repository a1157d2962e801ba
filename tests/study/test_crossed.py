"""Crossed random effects (seeds and problems both random): by hand, against a mixed model, on planted effects in
synthetic run files, at its nominal coverage, and its MDE against a simulated power curve."""

import json

import numpy as np
import pytest
from synthetic import write_eval

from rlvr_utils.study.frames import load_grid
from rlvr_utils.study.perseed import run_deltas
from rlvr_utils.core.files import append_jsonl, jsonl_text
from rlvr_utils.study.crossed import contrast_matrix, crossed_interaction, crossed_mean, mde, power, projected
from rlvr_utils.core.runs import RunDir


def simulate(rng, seeds: int, problems: int, sd_seed: float, sd_problem: float, sd_resid: float, mean: float = 0.0):
    return (mean + rng.normal(0, sd_seed, (seeds, 1)) + rng.normal(0, sd_problem, (1, problems))
            + rng.normal(0, sd_resid, (seeds, problems)))


def test_a_hand_built_case():
    Y = np.array([[1.0, 2, 3, 4], [2, 3, 5, 6], [0, 2, 2, 4]])
    # by hand: grand mean 34/12; seed means 2.5, 4, 2; problem means 1, 7/3, 10/3, 14/3
    m = 34 / 12
    ms_s = 4 * sum((r - m) ** 2 for r in (2.5, 4, 2)) / 2
    ms_p = 3 * sum((c - m) ** 2 for c in (1, 7 / 3, 10 / 3, 14 / 3)) / 3
    resid = [[Y[i, j] - (2.5, 4, 2)[i] - (1, 7 / 3, 10 / 3, 14 / 3)[j] + m for j in range(4)] for i in range(3)]
    ms_e = sum(x * x for row in resid for x in row) / 6
    c = crossed_mean(Y)
    assert c.est == pytest.approx(m) and c.se == pytest.approx(np.sqrt((ms_s + ms_p - ms_e) / 12))
    assert c.var_seed == pytest.approx((ms_s - ms_e) / 4) and c.var_problem == pytest.approx((ms_p - ms_e) / 3)
    df = (ms_s + ms_p - ms_e) ** 2 / (ms_s**2 / 2 + ms_p**2 / 3 + ms_e**2 / 6)
    assert c.df == pytest.approx(df)


def test_it_agrees_with_a_mixed_model_fit_by_statsmodels():
    import pandas as pd
    import statsmodels.formula.api as smf

    Y = simulate(np.random.default_rng(3), 8, 30, 0.3, 0.5, 0.4, mean=1.0)
    c = crossed_mean(Y)
    df = pd.DataFrame([(s, p, Y[s, p]) for s in range(8) for p in range(30)], columns=["seed", "prob", "y"])
    fit = smf.mixedlm("y ~ 1", df, groups=np.ones(len(df)), re_formula="0",
                      vc_formula={"seed": "0 + C(seed)", "prob": "0 + C(prob)"}).fit(reml=True)
    vc = dict(zip(fit.model.exog_vc.names, fit.vcomp))
    assert fit.fe_params["Intercept"] == pytest.approx(c.est)
    assert fit.bse["Intercept"] == pytest.approx(c.se, rel=1e-3)  # balanced: REML is the ANOVA estimator
    assert vc["seed"] == pytest.approx(c.var_seed, rel=1e-3) and vc["prob"] == pytest.approx(c.var_problem, rel=1e-3)
    assert fit.scale == pytest.approx(c.var_resid, rel=1e-3)


def test_nothing_is_floored():
    Y = simulate(np.random.default_rng(0), 5, 40, 0.0, 0.0, 1.0)  # no seed or problem effect: estimates straddle 0
    comps = [crossed_mean(simulate(np.random.default_rng(s), 5, 40, 0.0, 0.0, 1.0)).var_seed for s in range(20)]
    assert min(comps) < 0 < max(comps)  # a negative estimate is reported as it is
    assert crossed_mean(Y).var_resid > 0


def test_a_mean_without_a_positive_variance_estimate_says_so_in_words():
    from rlvr_utils.study.report import primary_sentence

    c = crossed_mean(np.array([[1.0, -1.0], [-1.0, 1.0]]))  # only seed x problem variation: MS_s + MS_p - MS_e < 0
    assert c.se != c.se and c.lo != c.lo
    it = {"k": 1, "c": c, "labels": ("1m/1M", "7m/2M"), "objectives": ("nsr", "psr"), "mde": c.mde(),
          "mde_interval": c.mde_interval(), "ends": (0.01, 0.01)}
    text = primary_sentence(it, 0.02)
    assert "not estimable" in text and "no interval and no minimum detectable effect" in text
    assert "NSR − PSR +0.010 on rung 1m/1M, +0.010 on 7m/2M" in text
    assert "nan" not in text


def test_the_interval_covers_the_truth_at_its_nominal_rate():
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(400):
        c = crossed_mean(simulate(rng, 10, 64, 0.05, 0.1, 0.2, mean=0.02))
        hits += c.lo <= 0.02 <= c.hi
    assert 0.92 <= hits / 400 <= 0.98, hits / 400


def test_the_mde_matches_a_simulated_power_curve_within_its_interval():
    rng = np.random.default_rng(5)
    sds = (0.05, 0.1, 0.2)
    pilot = crossed_mean(simulate(rng, 10, 64, *sds))
    lo, hi = pilot.mde_interval()
    assert lo < pilot.mde() < hi
    # the design's power at a grid of effects, by simulation: where it crosses 0.8
    effects = np.linspace(0.0, 0.2, 11)
    curve = [np.mean([not (c.lo <= 0 <= c.hi) for c in (crossed_mean(simulate(rng, 10, 64, *sds, mean=d))
                                                          for _ in range(300))]) for d in effects]
    at80 = float(np.interp(0.8, curve, effects))
    assert lo <= at80 <= hi, (lo, at80, hi, curve)
    # and the noncentral t's power at the true standard error says the same
    true_se = np.sqrt(sds[0] ** 2 / 10 + sds[1] ** 2 / 64 + sds[2] ** 2 / 640)
    assert abs(mde(true_se, pilot.df) - at80) < 0.02
    assert power(at80, true_se, pilot.df) == pytest.approx(0.8, abs=0.06)
    assert projected(pilot, 10, 64) == pytest.approx((pilot.se, pilot.df))  # its own size: itself
    from rlvr_utils.study.crossed import sizing

    own = sizing(pilot, (10, 40), 64).set_index("seeds")
    assert own.loc[10, "mde"] == pytest.approx(pilot.mde())  # and its sizing row is its own MDE and interval
    assert (own.loc[10, "mde_lo"], own.loc[10, "mde_hi"]) == pytest.approx(pilot.mde_interval(), rel=1e-6)
    assert own.loc[40, "mde"] < own.loc[10, "mde"]
    se, _ = projected(pilot, 40, 64)  # four times the seeds shrink the seed part, not the problems'
    assert np.sqrt(max(pilot.var_problem, 0) / 64) < se < pilot.se


def crossed_grid(root, planted, seeds: int = 6, problems: int = 48, samples: int = 16, seed: int = 0,
                 rungs: dict | None = None):
    """Run files of rungs (default n=0, n=1000; `rungs`: {n: shift of its base}) x psr, nsr x `seeds`, on `problems`
    x `samples` evaluations: per problem a base success rate; a run's final rate is the base's +
    `planted(rung, objective, problem)` + a seed shift."""
    rng = np.random.default_rng(seed)
    base0 = rng.uniform(0.2, 0.6, problems)
    for n, shift0 in (rungs or {0: 0.0, 1000: 0.0}).items():
        base = np.clip(base0 + shift0, 0, 1)
        rung = root / "rungs" / f"n{n}"
        rung.mkdir(parents=True)
        (rung / "warmstart.json").write_text(json.dumps({"n": n}))
        for s in range(seeds):
            shift = rng.normal(0, 0.02)
            base_c = rng.binomial(samples, base)
            for obj in ("psr", "nsr"):
                run = RunDir(root / "grid" / f"n{n}__{obj}__s{s}")
                run.path.mkdir(parents=True)
                run.config.write_text(json.dumps({"model": str(rung), "objective": obj, "seed": s}))
                final = np.clip(base + shift + np.array([planted(n, obj, p) for p in range(problems)]), 0, 1)
                final_c = rng.binomial(samples, final)
                ev = lambda v: {"mean": v, "lo": v, "hi": v, "n": problems}  # noqa: E731
                append_jsonl(run.evals, [{"step": st, "greedy": ev(0.5), "pass_at_k": {"1": ev(float(np.mean(c)) / samples)}}
                                         for st, c in ((0, base_c), (6, final_c))])
                for step, counts in ((0, base_c), (6, final_c)):
                    write_eval(run, step, [
                        {"protocol": "sampled", "problem_id": f"p{i}", "sample": j,
                         "status": "correct" if j < c else "incorrect"} for i, c in enumerate(counts) for j in range(samples)])
    return run_deltas(load_grid(root / "grid"))


def test_a_planted_interaction_is_recovered_from_run_files(tmp_path):
    deltas = crossed_grid(tmp_path, lambda n, o, p: 0.15 if (n, o) == (1000, "nsr") else 0.0)
    it = crossed_interaction(deltas, k=1)
    c = it["c"]
    assert c.lo < 0.15 < c.hi and c.lo > 0, c
    assert c.seeds == 6 and c.problems == 48 and it["mde_interval"][0] < it["mde"] < it["mde_interval"][1]


def test_the_answer_says_which_objective_leads_and_whether_the_goal_is_met(tmp_path):
    # PSR planted 0.1 above NSR on n=0 and 0.3 above on n=1000: NSR − PSR falls, PSR's lead grows; the sentence
    # names both ends, and the components table shows each estimate with the se and df it gives
    from rlvr_utils.study.report import components_markdown, primary_sentence

    deltas = crossed_grid(tmp_path, lambda n, o, p: (0.1 if n == 0 else 0.3) if o == "psr" else 0.0)
    it = crossed_interaction(deltas, k=1)
    lo_end, hi_end = it["ends"]
    assert it["c"].est == pytest.approx(hi_end - lo_end) and -0.15 < lo_end < -0.05 and -0.35 < hi_end < -0.25
    text = primary_sentence(it, 0.02)
    assert text.startswith(f"Pass@1: yes: NSR − PSR falls with the prior, from {lo_end:+.3f} on rung n=0 to "
                           f"{hi_end:+.3f} on n=1000: PSR's lead grows.")
    assert text.endswith("(goal ≤ 0.02: not reached).") and it["mde"] > 0.02
    m_lo, m_hi = it["mde_interval"]
    assert primary_sentence(it, (it["mde"] + m_hi) / 2).endswith(": reached by the estimate, not across its interval).")
    assert primary_sentence(it, 2 * m_hi).endswith(": reached).")
    row = components_markdown([it]).splitlines()[-1]
    assert row.startswith("| pass@1 | 6 × 48 | ") and f"| {it['c'].se:.4f} | {it['c'].df:.1f} |" in row


def test_a_planted_objective_by_problem_effect_is_recovered(tmp_path):
    """NSR helps half the problems by 0.25 and hurts the other half as much: no mean effect, but a problem
    component of 0.25^2 that a t over seeds (problems fixed) leaves out of its interval."""
    deltas = crossed_grid(tmp_path, lambda n, o, p: (0.25 if p % 2 else -0.25) if o == "nsr" else 0.0, seeds=8)
    m = contrast_matrix(deltas, 1, "nsr", "psr", "n=0")
    c = crossed_mean(m.to_numpy())
    assert c.lo < 0 < c.hi
    assert 0.04 < c.var_problem < 0.09  # the planted 0.0625, less what clipping at 0 and 1 takes off
    seed_only = np.std(m.mean(axis=1), ddof=1) / np.sqrt(len(m))  # a t over seeds: problems treated as fixed
    assert c.se > 3 * seed_only


def test_the_skill_axis_secondary_uses_the_least_and_most_skilled_rungs(tmp_path):
    # compute order n0 < n200 < n1000, skill order n0 < n1000 < n200: the secondary contrast along skill takes
    # n0 and n200, where the interaction was planted; the primary (compute ends n0, n1000) sees none
    from rlvr_utils.study.crossed import skill_bounds
    from rlvr_utils.study.report import skill_markdown

    deltas = crossed_grid(tmp_path, lambda n, o, p: 0.15 if (n, o) == (200, "nsr") else 0.0,
                          rungs={0: -0.15, 200: 0.3, 1000: 0.0})
    orders = deltas.groupby("rung")["rung_order"].first()
    assert skill_bounds(deltas) == (orders["n=0"], orders["n=200"])
    primary = crossed_interaction(deltas, k=1)["c"]
    skill = crossed_interaction(deltas, k=1, rungs=skill_bounds(deltas))["c"]
    assert primary.lo < 0 < primary.hi and skill.lo < 0.15 < skill.hi and skill.lo > 0
    text = skill_markdown(deltas, 1, crossed_interaction(deltas, k=1)["rungs"])
    assert text.startswith("Along skill") and "rung n=0 vs n=200" in text
    assert skill_markdown(deltas, 1, skill_bounds(deltas)) == ""  # the primary's own ends: nothing to add


def test_a_table_cell_without_a_useful_interval_says_why():
    from rlvr_utils.study.report import _crossed_cell

    nan = float("nan")
    assert _crossed_cell({"est": -0.046, "se": nan, "df": nan, "lo": nan, "hi": nan, "seeds": 3}) == \
        "-0.046 (no positive variance estimate)"
    assert _crossed_cell({"est": 0.031, "se": nan, "df": nan, "lo": nan, "hi": nan, "seeds": 1}) == "+0.031 (one seed)"
    assert "wider than [-1, 1]: df 0.06" in _crossed_cell({"est": -0.027, "se": 0.01, "df": 0.06, "lo": -4e17, "hi": 4e17,
                                                           "seeds": 2})
    assert _crossed_cell({"est": 0.01, "se": 0.05, "df": 3.0, "lo": -0.09, "hi": 0.11, "seeds": 3}) == \
        "+0.010 [-0.090, +0.110]"


def test_a_projection_that_would_need_a_negative_mean_square_has_no_mde():
    # every seed's mean is the same while seed x problem is not: the seeds agree beyond chance, var_seed < 0
    Y = np.array([[0.0, 1, 0, 1]]) + np.array([[0.2, -0.2, 0.2, -0.2], [-0.2, 0.2, -0.2, 0.2], [0.1, -0.1, -0.1, 0.1]])
    c = crossed_mean(Y)
    assert c.var_seed < 0 < c.se  # estimable at its own size
    assert projected(c, 3, 4) == pytest.approx((c.se, c.df))
    assert all(np.isnan(projected(c, 3, 4000)))  # 4000 problems x a negative var_seed: a negative MS_seed


def test_the_mde_at_a_fraction_of_a_degree_of_freedom_is_found_not_raised():
    for df in (0.3, 0.6):
        d = mde(1.0, df)
        assert d > 50 and power(d, 1.0, df) == pytest.approx(0.8, abs=1e-6)


def test_a_cell_of_one_seed_keeps_its_row_with_no_interval(tmp_path):
    # NSR on n=1000 finished one seed of six: its row reads that seed's change, not as a cell never run
    import shutil

    from rlvr_utils.study.crossed import crossed_effect_table
    from rlvr_utils.study.report import report_summary

    crossed_grid(tmp_path, lambda n, o, p: 0.1 if o == "nsr" else 0.0)
    for s in range(1, 6):
        shutil.rmtree(tmp_path / "grid" / f"n1000__nsr__s{s}")
    deltas = run_deltas(load_grid(tmp_path / "grid"))
    t = crossed_effect_table(deltas, (1,)).set_index(["rung", "objective"])
    assert len(t) == 4
    one = t.loc[("n=1000", "nsr")]
    only = deltas[(deltas["run"] == "n1000__nsr__s0") & (deltas["k"] == 1)]["delta"].item()  # its eval rows' Δpass@1
    assert one["seeds"] == 1 and one["problems"] == 48 and one["est"] == pytest.approx(only)
    assert np.isnan([one["se"], one["df"], one["lo"], one["hi"]]).all()
    assert t.loc[("n=1000", "psr"), "seeds"] == 6 and t.loc[("n=1000", "psr"), "lo"] < t.loc[("n=1000", "psr"), "hi"]
    text = report_summary(tmp_path / "grid", 1)
    row = [x for x in text.splitlines() if x.startswith("| n=1000 | nsr | 1 × 48 |")]
    assert len(row) == 1 and f"| {only:+.3f} (one seed) |" in row[0]
    assert "*" in row[0] and "* a cell of one seed" in text  # the t column's bootstrap says what it is


def test_movement_counts_what_each_objective_trained_on_and_how_far_it_moved(tmp_path):
    # NSR's policy planted to move every problem by 0.25 on n=1000, PSR's not at all; the trainer's rows say what
    # each kept: PSR 3 samples a step, NSR 13, over 6 steps
    from rlvr_utils.study.dynamics import movement

    deltas = crossed_grid(tmp_path, lambda n, o, p: (0.25 if p % 2 else -0.25) if (n, o) == (1000, "nsr") else 0.0)
    for run in (tmp_path / "grid").iterdir():
        kept = 13 if "__nsr__" in run.name else 3
        append_jsonl(run / "metrics.jsonl", [{"step": st, "kept": kept, "tokens_trained": 20 * kept,
                                              "kl_to_init": 0.01 * st} for st in range(1, 7)])
    mov = movement(load_grid(tmp_path / "grid"), deltas, last=2).set_index(["rung", "objective"])
    nsr, psr = mov.loc[("n=1000", "nsr")], mov.loc[("n=1000", "psr")]
    assert (nsr["samples_trained"], psr["samples_trained"], nsr["tokens_trained"]) == (78, 18, 1560)
    assert nsr["kl_to_init"] == pytest.approx(0.055) and nsr["seeds"] == 6
    # movement per sample trained: the same KL over 18 samples is 78/18 times NSR's per sample
    assert psr["kl_per_1k"] == pytest.approx(1000 * 0.055 / 18) and nsr["kl_per_1k"] == pytest.approx(1000 * 0.055 / 78)
    # here a run's base and final are independent draws, so the unmoved PSR's ratio is about 1; the ratio's
    # t-interval over seeds separates the moved policy from it on the same rung
    assert nsr["ratio_lo"] <= nsr["ratio"] <= nsr["ratio_hi"] and psr["ratio_hi"] < nsr["ratio_lo"]
    assert nsr["noise_rms"] == psr["noise_rms"] > 0  # one rung, one re-sampling noise


def test_the_study_figure_is_drawn_from_run_files_and_a_bad_path_is_refused_first(tmp_path, capsys):
    from rlvr_utils.cli import main

    crossed_grid(tmp_path, lambda n, o, p: 0.1 if (n, o) == (1000, "psr") else 0.0)
    grid, png = str(tmp_path / "grid"), tmp_path / "study.png"
    for bad, why in ((["--figure", str(png)], "with --summary"), (["--summary", "--figure", str(tmp_path / "s.svg")], "a .png"),
                     (["--summary", "--figure", str(tmp_path / "no" / "s.png")], "no folder")):
        assert main(["report", grid, *bad]) != 0 and why in capsys.readouterr().err
    assert not png.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty), "--summary", "--figure", str(png)]) != 0 and not png.exists()
    assert "no figure to draw" in capsys.readouterr().err
    assert main(["report", grid, "--summary", "--figure", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(tmp_path.glob("*.partial*"))
    assert capsys.readouterr().out.rstrip().endswith(str(png))


def test_a_cell_without_an_estimate_keeps_its_row_and_says_why(tmp_path):
    # NSR's runs on n=1000 lost their per-problem records (the samples and their counts in eval.jsonl): its row stays
    # in the table, saying so, beside the others
    import shutil

    from rlvr_utils.study.crossed import crossed_effect_table
    from rlvr_utils.study.report import report_summary

    crossed_grid(tmp_path, lambda n, o, p: 0.0)
    for s in range(6):
        run = RunDir(tmp_path / "grid" / f"n1000__nsr__s{s}")
        shutil.rmtree(run.samples)
        run.evals.write_text(jsonl_text({k: v for k, v in r.items() if k != "per_problem"} for r in run.read_evals()))
    t = crossed_effect_table(run_deltas(load_grid(tmp_path / "grid")), (1,)).set_index(["rung", "objective"])
    assert len(t) == 4 and "no per-problem evaluation samples" in t.loc[("n=1000", "nsr"), "why"]
    assert t.loc[("n=1000", "psr"), "why"] == "" and t.loc[("n=1000", "psr"), "lo"] < t.loc[("n=1000", "psr"), "hi"]
    text = report_summary(tmp_path / "grid", 1)
    row = next(x for x in text.splitlines() if x.startswith("| n=1000 | nsr | 6 × 0 |"))
    assert "| — (" in row and "no per-problem evaluation samples" in row
    assert text.startswith("**No primary answer at pass@1")


def test_the_seeds_a_goal_needs_are_the_fewest_that_meet_it_and_none_below_the_problems_floor():
    from rlvr_utils.study.crossed import seeds_for

    c = crossed_mean(simulate(np.random.default_rng(5), 6, 64, 0.05, 0.1, 0.2))
    at = lambda S, P: mde(*projected(c, S, P))  # noqa: E731
    S = seeds_for(c, 0.1, 64)
    assert S and at(S, 64) <= 0.1 < at(S - 1, 64)
    floor = at(10_000, 64)  # what the problems' own component leaves at any number of seeds
    assert seeds_for(c, floor * 0.9, 64) is None and seeds_for(c, floor * 0.9, 64 * 100) is not None


def test_the_study_figure_places_a_base_that_solves_nothing_like_any_other_rung():
    """Rungs are categories ordered by their base's pass@1: one that solves nothing (0, which a log axis had no
    place for) takes the first place, named with its pass@1."""
    import pandas as pd

    from rlvr_utils.study.studyfig import plot_study

    row = dict(which="delta", k=1, est=0.1, lo=0.0, hi=0.2, lo_clip=0.0, hi_clip=0.2, wide=False)
    pk = pd.DataFrame([row | {"objective": "nsr", "rung": r} for r in ("a", "b")])
    con = pd.DataFrame([row | {"objective": "nsr-psr", "rung": "a"}])
    fig = plot_study(pk, con, pd.Series({"a": 0.0, "b": 0.3}), (1,))
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a\n0.00", "b\n0.30"]
    assert {ax.get_xscale() for ax in fig.axes} == {"linear"}
