"""A grid's per-problem counts by rung, build, seed and problem, read from run files written as the trainer writes
them, and the analyses with builds random on a planted slope of NSR − PSR over the rungs' skill."""


import pytest

from synthetic import write_controls_grid
from rlvr_utils.study.outcomes import build_analyses, contrast_long, problem_counts, split_build

def test_a_label_splits_into_rung_and_build():
    assert split_build("1m/2M seed=2 corpus=column:1=5") == ("1m/2M corpus=column:1=5", 2)
    assert split_build("1m/2M") == ("1m/2M", 0)


def test_counts_and_the_planted_slope_with_builds_random(tmp_path):
    write_controls_grid(tmp_path)
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

    write_controls_grid(tmp_path / "g", builds=2, seeds=2, problems=12, n=16)
    text = summary(tmp_path / "g", fig=tmp_path / "passk.png")
    assert "| 1m/1M | nsr | 8 |" in text and "guessing floor" in text and "var_build" in text
    assert "Slope over the rungs' base pass@1" in text and "On the logit scale" in text and "3 rung pairs" in text
    assert (tmp_path / "passk.png").stat().st_size > 10_000
    assert "## NSR − PSR at every k" in text and "| 8 | " in text.split("at every k")[1]
