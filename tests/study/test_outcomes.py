"""A grid's per-problem counts by rung, build, seed and problem, read from run files written as the trainer writes
them, and the analyses with builds random on a planted slope of NSR − PSR over the rungs' skill."""

import json

import numpy as np
import pytest

from rlvr_utils.core.files import append_jsonl
from rlvr_utils.core.runs import RunDir
from rlvr_utils.study.outcomes import build_analyses, contrast_long, problem_counts, split_build

RUNGS = {"1000000": 0.1, "2000000": 0.3, "4000000": 0.6}  # tokens -> the base's pass@1


def write_grid(root, slope_true=-0.1, builds=3, seeds=3, problems=40, n=64, seed=0):
    rng = np.random.default_rng(seed)
    prob = rng.normal(0, 0.05, problems)
    for tokens, p0 in RUNGS.items():
        for b in range(builds):
            pb = p0 + rng.normal(0, 0.03)  # a build's own skill
            for s in range(seeds):
                base = rng.binomial(n, np.clip(pb + prob, 0.01, 0.99))
                for obj, shift in (("psr", 0.0), ("nsr", slope_true * p0 + rng.normal(0, 0.01))):
                    final = rng.binomial(n, np.clip(pb + prob + shift + 0.05, 0.01, 0.99))
                    run = RunDir(root / f"r{tokens}-b{b}-{obj}-s{s}")
                    run.path.mkdir(parents=True)
                    run.config.write_text(json.dumps({"model": f"family:size=1m,tokens={tokens},seed={b}",
                                                      "objective": obj, "seed": s,
                                                      "data": "gen:column?difficulty=2&n=4000"}))
                    run.set_status("done")
                    rows = [{"step": step, "per_problem": {"n": n, "correct": {f"p{i}": int(c[i]) for i in range(problems)}},
                             "protocols": {"paper": {"per_problem": {"n": n, "correct": {"p0": 1, "p1": 2}}}}}
                            for step, c in ((0, base), (20, final))]
                    append_jsonl(run.evals, rows)


def test_a_label_splits_into_rung_and_build():
    assert split_build("1m/2M seed=2 corpus=column:1=5") == ("1m/2M corpus=column:1=5", 2)
    assert split_build("1m/2M") == ("1m/2M", 0)


def test_counts_and_the_planted_slope_with_builds_random(tmp_path):
    write_grid(tmp_path)
    counts = problem_counts(tmp_path)
    assert len(counts) == 3 * 3 * 3 * 2 * 40 and set(counts["build"]) == {0, 1, 2}
    assert set(counts["rung"]) == {"1m/1M", "1m/2M", "1m/4M"}
    res = build_analyses(counts, k=1, goal=0.02)
    assert res["rungs"] == ["1m/1M", "1m/2M", "1m/4M"] and all(c.builds == 3 for c in res["per_rung"].values())
    s = res["slope"]
    assert s.lo <= -0.1 <= s.hi and s.hi < 0  # the planted slope, found with builds, seeds and problems random
    assert res["slope_logit"].est < 0 and len(res["pairs"]) == 3 and "3 rung pairs" in res["pairs_note"]
    paper = problem_counts(tmp_path, protocol="paper")
    assert len(paper) == 3 * 3 * 3 * 2 * 2
    with pytest.raises(ValueError, match="no per-problem counts for protocol 'other'"):
        problem_counts(tmp_path, protocol="other")
    with pytest.raises(ValueError, match="logit"):
        contrast_long(counts, 4, scale="logit")


def test_the_controls_summary_and_its_figure(tmp_path):
    from rlvr_utils.study.controls import summary

    write_grid(tmp_path / "g", builds=2, seeds=2, problems=12, n=16)
    text = summary(tmp_path / "g", fig=tmp_path / "passk.png")
    assert "| 1m/1M | nsr | 8 |" in text and "guessing floor" in text and "var_build" in text
    assert "Slope over the rungs' base pass@1" in text and "On the logit scale" in text and "3 rung pairs" in text
    assert (tmp_path / "passk.png").stat().st_size > 10_000
    assert "## NSR − PSR at every k" in text and "| 8 | " in text.split("at every k")[1]
