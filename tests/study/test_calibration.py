"""The step-size calibration's rule, on the committed controls smoke's cells and on planted movements."""

import json

import numpy as np
import pandas as pd
import pytest

from rlvr_utils.study.calibration import calibration_cells, calibration_markdown, chosen_lr, judged

from conftest import REPO

SMOKE = REPO / "runs" / "controls-smoke" / "onpolicy"


def test_every_finished_cell_of_a_folder_is_read_with_its_own_lr_and_collapse_ratio():
    cells = calibration_cells([SMOKE])
    assert len(cells) == 16 and set(cells["lr"]) == {1e-4}
    # NaN where a cell's evaluations solve nothing (no re-sampling noise to measure a change against): not moved
    assert ((cells["ratio"] >= 0) | cells["ratio"].isna()).all() and cells["ratio"].notna().sum() >= 8
    cell = cells[cells["run"] == "fam-1m-4M__nsr__s0"].iloc[0]
    rates = [json.loads(x)["correct_ratio"] for x in (SMOKE / cell["run"] / "metrics.jsonl").read_text().splitlines()]
    assert cell["collapse_ratio"] == pytest.approx(np.mean(rates[-5:]) / rates[0])  # by hand from the run's metrics
    text = calibration_markdown(cells)
    assert f"| 0.0001 | fam-1m-4M | nsr | 0 | {cell['ratio']:.2f} |" in text and "| 0.0001 | fam-1m-4M-b1 | psr | 1 |" in text
    assert "| 0.0001 | 16 | " in text and "No lr meets the rule" in text  # a cell within noise at 1e-4 (5 steps)


def _cells(plan: dict[float, list[tuple[str, float, float]]]) -> pd.DataFrame:
    return pd.DataFrame([{"lr": lr, "objective": obj, "ratio": ratio, "collapse_ratio": collapse}
                         for lr, rows in plan.items() for obj, ratio, collapse in rows])


def test_the_rule_picks_the_smallest_lr_that_moves_every_cell_without_a_collapse():
    plan = {2e-5: [("psr", 1.4, np.nan), ("nsr", 0.8, 0.9)],     # NSR within re-sampling noise
            4e-5: [("psr", 2.1, np.nan), ("nsr", 1.3, 0.7)],     # both moved, NSR's reward rate kept
            8e-5: [("psr", 3.0, np.nan), ("nsr", 2.2, 0.3)]}     # NSR collapsed
    j = judged(_cells(plan)).set_index("lr")
    assert list(j["meets"]) == [False, True, False] and j.loc[8e-5, "collapsed"] and not j.loc[2e-5, "all_moved"]
    assert chosen_lr(_cells(plan)) == 4e-5
    assert chosen_lr(_cells(plan), expected=3) is None  # an lr is judged only once its every cell finished
    psr_only = {lr: [("psr", 0.5, 0.1)] for lr in plan}  # a PSR cell's falling reward rate is not a collapse
    assert chosen_lr(_cells({**psr_only, 4e-5: [("psr", 1.5, 0.1)]})) == 4e-5


def test_the_calibration_runs_on_the_weakest_committed_rung_where_psr_sees_correct_samples():
    from rlvr_utils.grid.profiles import PROFILES, cells
    from rlvr_utils.priors.ladder import rungs_of
    from rlvr_utils.priors.recipes import parse_spec
    from rlvr_utils.study.calibration import LEAST_CORRECT, calibration_rung

    rungs = rungs_of([REPO / "runs" / "controls-rungs" / parse_spec(m).key() for m in PROFILES["controls"].models])
    p = PROFILES["controls-calibration"].params
    trained = p["steps"] * p["prompts_per_step"] * p["rollouts_per_prompt"]
    rung = calibration_rung(rungs, trained)
    assert rung is not None and rung.name == "fam-1m-4M" and sorted(rung.seeds) == [0, 1, 2]
    # the ladder's weakest rung gives some build's PSR cell a handful of correct samples: nothing to calibrate on
    assert rungs[0].name == "fam-1m-2M" and min(rungs[0].values(1)) * trained < LEAST_CORRECT
    assert {c.name.split("__")[0] for c in cells("controls-calibration")} == {"fam-1m-4M", "fam-1m-4M-b1", "fam-1m-4M-b2"}


def test_the_controls_lr_is_the_committed_calibrations_choice():
    from rlvr_utils.grid.profiles import CONTROLS_RL, cells

    folders = sorted(p for p in (REPO / "runs" / "controls-calibration").iterdir() if p.is_dir())
    assert chosen_lr(calibration_cells(folders), expected=len(cells("controls-calibration"))) == CONTROLS_RL["lr"]
    arms = ("controls", "controls-matched", "controls-offpolicy")
    assert {c.config.lr for a in arms for c in cells(a)} == {CONTROLS_RL["lr"]}
