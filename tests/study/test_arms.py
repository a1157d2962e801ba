"""The controls arms side by side: each arm's training signal from its journals, and an arm's difference from the
reference arm's slope, paired by rung, build, seed and problem, recovering a planted difference."""

import pytest

from synthetic import write_controls_grid
from rlvr_utils.study.arms import arm_slopes, arms_summary, main, training_signal


def test_the_training_signal_per_rung_and_objective(tmp_path):
    write_controls_grid(tmp_path, builds=2, seeds=2, problems=8, n=16)
    sig = training_signal(tmp_path).set_index(["rung", "objective"])
    assert sig.loc[("1m/1M", "nsr"), "kept"] == 8 and sig.loc[("1m/1M", "psr"), "kept"] == 1
    # the same KL over 8x the samples: 1/8 the movement per sample trained
    assert sig.loc[("1m/2M", "psr"), "kl_per_1k_samples"] == pytest.approx(8 * sig.loc[("1m/2M", "nsr"), "kl_per_1k_samples"])


def test_an_arms_difference_from_the_reference_is_recovered(tmp_path):
    write_controls_grid(tmp_path / "on", slope_true=-0.1, seed=0)
    write_controls_grid(tmp_path / "matched", slope_true=+0.1, seed=1)
    t = arm_slopes({"on": tmp_path / "on", "matched": tmp_path / "matched"}).set_index(["arm", "k"])
    on, matched = t.loc[("on", 1)], t.loc[("matched", 1)]
    assert on["hi"] < 0 < matched["lo"]  # each arm's planted slope, by sign
    assert matched["vs_lo"] <= 0.2 <= matched["vs_hi"] and matched["vs_lo"] > 0  # the planted difference, +0.2
    assert "vs_ref" not in t.columns or t.loc[("on", 1)].isna()["vs_ref"]


def test_the_summary_and_its_command(tmp_path, capsys):
    for arm in ("on", "off"):
        write_controls_grid(tmp_path / arm, builds=2, seeds=2, problems=8, n=16)
    text = arms_summary({"on": tmp_path / "on", "off": tmp_path / "off"})
    assert "reference arm: on" in text and "| off | 1m/1M | nsr | 8 |" in text and "minus on's" in text
    assert main([f"on={tmp_path / 'on'}", f"off={tmp_path / 'off'}", "--out", str(tmp_path / "ARMS.md")]) == 0
    assert (tmp_path / "ARMS.md").read_text() == text
    with pytest.raises(SystemExit):
        main([f"on={tmp_path / 'missing'}"])
    assert "NAME=RUNS_DIR" in capsys.readouterr().err
