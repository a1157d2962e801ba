"""A grid's per-problem counts by rung, build, seed and problem, read from run files written as the trainer writes
them, and the analyses with builds random on a planted slope of NSR − PSR over the rungs' skill."""


import numpy as np
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


def test_a_bonferroni_interval_wider_than_the_range_is_said_not_printed(tmp_path):
    """The smoke's scale (2 builds x 2 seeds) puts some rung pairs' Bonferroni intervals at df far below 1: the pair
    table says so instead of printing ends of +-2e7 (as the smoke's summary once did)."""
    import re

    from rlvr_utils.core.stats import fmt_bounds
    from rlvr_utils.study.controls import summary

    write_controls_grid(tmp_path / "g", builds=2, seeds=2, problems=8, n=16, seed=1)
    rows = [line.split("|") for line in summary(tmp_path / "g").splitlines()
            if line.count("|") == 7 and line.split("|")[2].strip().startswith("1m/")]  # the pair tables' rows
    bonferroni = [r[5] for r in rows]
    assert len(rows) == 6 and any("wider than the whole range" in b for b in bonferroni)
    assert all(abs(float(x)) <= 2 for b in bonferroni for x in re.findall(r"[-+]\d+\.\d+", b))
    assert fmt_bounds(-2e7, 2e7, span=2) == "wider than the whole range" and fmt_bounds(0.1, float("nan")) == "–"
    assert fmt_bounds(-0.1, 0.2, span=2) == "[-0.100, +0.200]"


def test_an_interval_wider_than_the_range_is_said_not_drawn():
    """A nested interval on 2 builds can have Satterthwaite df far below 1 (the controls smoke's: ±1e23 at
    pass@256): the figure draws such a point hollow with no bar inside [0, 1], the text says what it is, and a
    slope's range is the difference's over the rungs' span of base skill."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import pandas as pd

    from rlvr_utils.core.stats import fmt_interval
    from rlvr_utils.study.controls import passk_rows
    from rlvr_utils.study.slopes import slope_span
    from rlvr_utils.study.studyfig import draw_passk_rows

    nan = float("nan")
    table = pd.DataFrame({"rung": ["1m/2M corpus=x"] * 3, "objective": ["nsr"] * 3, "k": [1, 2, 4],
                          "base": [0.1, 0.2, 0.3], "base_lo": [0.05, 0.1, 0.2], "base_hi": [0.15, 0.3, 0.4],
                          "final": [0.2, 0.3, 0.4], "final_lo": [0.1, -1e23, nan], "final_hi": [0.3, 1e23, nan]})
    pk, base = passk_rows(table)
    fig, ax = plt.subplots()
    draw_passk_rows([ax], None, pk, base)
    lo, hi = ax.dataLim.y0, ax.dataLim.y1
    plt.close(fig)
    assert list(base.index) == ["1m/2M"] and base["1m/2M"] == pytest.approx(0.1)
    assert 0 <= lo and hi <= 1  # the clipped bands and the points, nothing of ±1e23
    hollow = [ln for ln in ax.lines if ln.get_markerfacecolor() == "white"]
    assert len(hollow) == 1 and list(hollow[0].get_xdata()) == [2, 4]  # the wide one and the one with no interval
    assert fmt_interval(0.3, -1e23, 1e23, span=1) == "+0.300 (interval wider than the whole range)"
    assert slope_span([0.1, 0.5]) == pytest.approx(10.0) and np.isnan(slope_span([0.3]))  # slopes in [-5, +5]
