"""What a grid's cells cost: read from a real run's files, the wall clock of cells side by side, and what a larger
design would take."""

import json
import shutil
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, TINY_RUN, merge

from rlvr_utils.study.frames import load_grid
from rlvr_utils.study.costs import cell_costs, cost_markdown, design_hours, wall_hours
from rlvr_utils.study.perseed import run_deltas
from rlvr_utils.study.crossed import seeds_for, crossed_mean, sizing
from rlvr_utils.core.runs import RunDir
from rlvr_utils.study.report import sizing_markdown


def _costs(rows):
    """Cells of one session each: the span they took on the wall clock is their work."""
    cols = ("rung", "seed", "done", "seconds", "eval_seconds", "problems", "cpu")
    return pd.DataFrame([{**dict(zip(cols, r)), "rung_order": 0, "span": r[3]} for r in rows])


def _jsonl(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_a_real_runs_cost_is_read_from_its_files(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "grid" / "run")
    runs = load_grid(tmp_path / "grid")
    c = cell_costs(runs, run_deltas(runs))
    status = json.loads((run / "status.json").read_text())
    evals, steps = _jsonl(run / "eval.jsonl"), _jsonl(run / "metrics.jsonl")
    meta = json.loads((run / "config.json").read_text())["_meta"]
    assert len(c) == 1
    row = c.iloc[0]
    # the cost is the work its rows record (steps, evaluations); its place on the wall clock is status.json's
    assert row["eval_seconds"] == pytest.approx(sum(e["seconds"] for e in evals))
    assert row["seconds"] == pytest.approx(sum(m["time_total"] for m in steps) + row["eval_seconds"])
    assert row["span"] == status["seconds"]
    assert 0 < row["eval_seconds"] < row["seconds"] and row["cpu"].startswith(meta["hardware"]["name"])


def test_a_resumed_cell_costs_every_session(fam_tiny_path, tmp_path):
    # status.json's seconds time the last process only: a cell stopped after step 1 and resumed would cost
    # just its second session, leaving out step 0's evaluation and step 1
    from rlvr_utils.core.config import TrainConfig, parse_sets
    from rlvr_utils.train.loop import train

    cfg = TrainConfig.from_dict(parse_sets(merge(*TINY_RUN, "checkpoint_every=1", f"model={fam_tiny_path}")))
    run = tmp_path / "grid" / "run"
    train(cfg, run, stop_after=1, log=lambda _: None)
    first = RunDir(run).work_seconds()
    train(cfg, run, resume=True, log=lambda _: None)
    runs = load_grid(tmp_path / "grid")
    row = cell_costs(runs, run_deltas(runs)).iloc[0]
    steps, evals = _jsonl(run / "metrics.jsonl"), _jsonl(run / "eval.jsonl")
    assert [m["step"] for m in steps] == [1, 2] and [e["step"] for e in evals] == [0, 2]
    assert row["seconds"] == pytest.approx(sum(m["time_total"] for m in steps) + sum(e["seconds"] for e in evals))
    assert row["seconds"] > first > 0 and row["eval_seconds"] <= row["seconds"]
    assert row["span"] == json.loads((run / "status.json").read_text())["seconds"]


def test_a_committed_resumed_cells_evaluations_are_a_part_of_its_cost(tmp_path):
    # runs/family's fam-1m-2M__psr__s1 was resumed: status.json says 70.6 s, its eval rows 95.8 s
    cell = "fam-1m-2M__psr__s1"
    shutil.copytree(REPO / "runs" / "family" / cell, tmp_path / "grid" / cell)
    runs = load_grid(tmp_path / "grid")
    c = cell_costs(runs, run_deltas(runs))
    row = c.iloc[0]
    assert row["eval_seconds"] == pytest.approx(95.82) and row["eval_seconds"] < row["seconds"]
    assert row["seconds"] == pytest.approx(RunDir(tmp_path / "grid" / cell).work_seconds()) and row["span"] == 70.6
    # what the report and a design's hours take from it: the evaluation's share is never more than the cell
    table = [x.split(" | ") for x in cost_markdown(c).splitlines() if x.startswith("| ")]
    assert len(table) == 2 and 0 < float(table[1][3]) <= float(table[1][2])  # minutes: of which evaluation, per cell
    assert 0 < design_hours(c, 1, 1) < design_hours(c, 1, 256) == pytest.approx(row["seconds"] / 3600)


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
    # the problems' own component keeps pass@1's MDE above 0.02 at any number of seeds on either size; at the
    # larger k's goal (0.05) 256 problems reach it, 64 do not
    assert "pass@1 ≤ 0.02 is out of reach on 64 or 256 problems at any number of seeds" in text
    S = seeds_for(c, 0.05, 256)
    assert S and seeds_for(c, 0.05, 64) is None
    assert (f"pass@16 ≤ 0.05 needs {S} seeds on 256 problems ({S} cells, {design_hours(costs, S, 256):.0f} h); "
            "is out of reach on 64 problems") in sizing_markdown([{"k": 16, "c": c}], costs, more_problems=256)
    assert "hours" not in sizing_markdown([it]).split("\n\n")[1]  # no costs: no hours column
