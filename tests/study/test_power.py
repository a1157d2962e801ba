"""Variance components and projected MDEs recover what synthetic run files plant."""

import numpy as np
import pytest
from synthetic import _seeded_grid

from rlvr_utils.study.perseed import perseed_interaction
from rlvr_utils.study.power import projected_mde, variance_components
from rlvr_utils.study.secondary import summary_markdown
from rlvr_utils.study.report import report_summary


def test_variance_components_recover_planted_seed_and_problem_noise(tmp_path):
    # NSR's seeds shift every problem together, PSR's none: the contrast's spread is the training runs',
    # more problems don't help
    shift = _seeded_grid(tmp_path / "shift", lambda rng, s, o: [2 + (s % 2) * 2 - 1 if o == "nsr" else 2] * 64)
    c = variance_components(shift, k=1)
    # per-seed contrasts -0.25, +0.25, -0.25, +0.25: variance 1/12
    assert (c["var_sp"] < 1e-12).all() and np.allclose(c["var_seed"], 1 / 12), c
    assert projected_mde(c, 3, 64) == pytest.approx(projected_mde(c, 3, 256))
    # at the grid's own design the projection is the interaction's own MDE
    assert projected_mde(c, 4, 64) == pytest.approx(perseed_interaction(shift, k=1)["mde_80"])
    # runs that move each problem up or down at random: all seed x problem, 4x problems halves the SE
    flips = _seeded_grid(tmp_path / "flips", lambda rng, s, o: list(rng.choice([1, 3], size=64)))
    c = variance_components(flips, k=1)
    # each objective moves each problem by +-0.25 at random: the contrast's per-problem variance 2/16
    assert (c["var_seed"] < 2e-3).all() and np.allclose(c["var_sp"], 1 / 8, rtol=0.25), c  # df 189: ~10% noise
    assert projected_mde(c, 3, 256) < 0.6 * projected_mde(c, 3, 64)
    # here seed means that spread less than their problems imply (chance, with 3 df a cell) are not
    # trusted: the projection keeps the problems' share, so it is never below the interaction's own MDE
    assert perseed_interaction(flips, k=1)["mde_80"] <= projected_mde(c, 4, 64) < 1.5 * perseed_interaction(flips, k=1)["mde_80"]
    assert "| 10 |" in summary_markdown(flips, 1) and "MDE, 256 problems" in summary_markdown(flips, 1)


def test_no_variance_at_either_end_projects_no_mde_and_the_report_still_renders(tmp_path):
    # neither policy moved: every seed's contrast is 0 on every problem at both rungs (as with pass@k saturated)
    flat = _seeded_grid(tmp_path, lambda rng, s, o: [2] * 64)
    c = variance_components(flat, k=1)
    assert (c["var_seed"] == 0).all() and (c["var_sp"] == 0).all(), c
    assert np.isnan(projected_mde(c, 3, 64)) and np.isnan(projected_mde(c, 10, 256))
    text = report_summary(tmp_path / "grid", 1)
    assert "| 3 | — | — |" in text and "| 10 | — | — |" in text and "nan" not in text
