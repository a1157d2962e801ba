"""What a grid's cells cost: read from a real run's files, the wall clock of cells side by side, and what a larger
design would take."""

import json
import shutil
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from rlvr_utils.analysis import load_grid
from rlvr_utils.costs import cell_costs, design_hours, wall_hours
from rlvr_utils.effects import run_deltas
from rlvr_utils.mixed import crossed_mean, sizing
from rlvr_utils.summary import sizing_markdown


def _costs(rows):
    return pd.DataFrame([dict(zip(("rung", "seed", "done", "seconds", "eval_seconds", "problems", "cpu"), r))
                         for r in rows])


def test_a_real_runs_cost_is_read_from_its_files(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "grid" / "run")
    runs = load_grid(tmp_path / "grid")
    c = cell_costs(runs, run_deltas(runs))
    status = json.loads((run / "status.json").read_text())
    evals = [json.loads(x) for x in (run / "eval.jsonl").read_text().splitlines()]
    meta = json.loads((run / "config.json").read_text())["_meta"]
    assert len(c) == 1
    row = c.iloc[0]
    assert row["seconds"] == status["seconds"] and row["eval_seconds"] == pytest.approx(sum(e["seconds"] for e in evals))
    assert 0 < row["eval_seconds"] < row["seconds"] and row["cpu"].startswith(meta["hardware"]["name"])


def test_cells_side_by_side_count_once_and_gaps_between_sessions_not_at_all():
    t = lambda h, m: datetime(2026, 1, 1, h, m)  # noqa: E731
    c = _costs([("a", 0, t(10, 10), 600, 0, 1, "x"),    # 10:00-10:10
                ("a", 1, t(10, 15), 600, 0, 1, "x"),    # 10:05-10:15, beside the first
                ("a", 2, t(14, 30), 1800, 0, 1, "x")])  # 14:00-14:30, another session
    assert wall_hours(c) == pytest.approx((15 + 30) / 60)


def test_a_designs_hours_scale_its_evaluation_with_problems_and_everything_with_seeds():
    # rung a: seed 0's first cell pays the base evaluation; per seed 300 s of which 120 s evaluating 100 problems
    c = _costs([("a", 0, None, 200, 100, 100, "x"), ("a", 0, None, 100, 20, 100, "x"),
                ("a", 1, None, 150, 60, 100, "x"), ("a", 1, None, 150, 60, 100, "x"),
                ("b", 0, None, 1000, 500, 100, "x")])
    assert design_hours(c, 1, 100) == pytest.approx((300 + 1000) / 3600)
    assert design_hours(c, 10, 100) == pytest.approx(10 * (300 + 1000) / 3600)
    assert design_hours(c, 1, 400) == pytest.approx((180 + 4 * 120 + 500 + 4 * 500) / 3600)


def test_the_sizing_table_names_each_designs_hours_and_a_larger_problem_set():
    rng = np.random.default_rng(0)
    Y = 0.1 + rng.normal(0, 0.05, (5, 1)) + rng.normal(0, 0.3, (1, 64)) + rng.normal(0, 0.2, (5, 64))
    c = crossed_mean(Y)
    it = {"k": 1, "c": c}
    costs = _costs([("a", s, datetime(2026, 1, 1, 10 + s), 1800, 900, 64, "cpu-x") for s in range(5)])
    text = sizing_markdown([it], costs, more_problems=256)
    rows = [x.split(" | ") for x in text.splitlines() if x.startswith("| 10 |")]
    want = sizing(c, (10,), 256).iloc[0]
    assert rows and rows[0][-2].startswith(f"{want['mde']:.3f}")  # pass@1 on 256 problems
    # the cells never overlapped: a cell-hour is an hour of wall clock
    assert float(rows[0][-1].rstrip(" |")) == pytest.approx(round(design_hours(costs, 10, 256), 1))
    assert float(rows[0][2]) == pytest.approx(round(design_hours(costs, 10, 64), 1))
    assert "cpu-x" in text and "256 (every problem of the task's test split" in text
    assert "hours" not in sizing_markdown([it]).split("\n\n")[1]  # no costs: no hours column
