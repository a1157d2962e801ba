"""What a grid's cells cost, from their run files: each finished cell's seconds of work (its metrics and eval
rows, `RunDir.work_seconds`), the share its evaluations took (eval.jsonl), the CPU it ran on (config.json), and
what a larger design would cost."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from .frames import Run
from ..core.runs import RunDir


def cell_costs(runs: list[Run], deltas: pd.DataFrame) -> pd.DataFrame:
    """One row per finished cell of `deltas` (`perseed.run_deltas`): its rung, objective, seed, seconds of work
    over all its sessions (`RunDir.work_seconds`), of which its evaluations (a step-0 evaluation copied from a
    sibling costs ~0), the number of problems evaluated, its CPU, and its last session's span from start-up to
    done (status.json: where it sat on the wall clock)."""
    rungs = deltas.drop_duplicates("path").set_index("path")
    rows = []
    for r in runs:
        if str(r.path) not in rungs.index or "seconds" not in r.status:
            continue
        hw = r.config.get("_meta", {}).get("hardware", {})
        cpu = hw.get("name", "?") + (" (bf16 native)" if hw.get("bf16_native") else "")
        if (threads := hw.get("threads")) and hw.get("precision"):  # recorded by runs since the family study
            cpu += f", a cell in {hw['precision']} on {threads} thread{'s' * (threads != 1)}"
        d = rungs.loc[str(r.path)]
        # status.json's seconds are the last session's only (train.py times each process): a resumed cell's cost
        # comes from its rows, which hold every session's steps and evaluations once
        run = RunDir(r.path)
        rows.append({"rung": d["rung"], "rung_order": d["rung_order"], "objective": d["objective"], "seed": d["seed"],
                     "seconds": run.work_seconds(), "eval_seconds": run.eval_seconds(),
                     "problems": int(r.config.get("eval_problems") or 0), "cpu": cpu,
                     "span": float(r.status["seconds"]), "done": datetime.fromisoformat(r.status["time"])})
    return pd.DataFrame(rows)


def wall_hours(costs: pd.DataFrame) -> float:
    """Hours of wall clock in which at least one cell ran, from each cell's last session (`span` seconds up to
    `done`): cells run side by side count once; gaps between sessions do not count."""
    seconds, end = 0.0, None
    for a, b in sorted((t - timedelta(seconds=s), t) for t, s in zip(costs["done"], costs["span"])):
        a = a if end is None else max(a, end)  # only the part after what earlier cells already covered
        seconds += max((b - a).total_seconds(), 0.0)
        end = b if end is None else max(end, b)
    return seconds / 3600


def design_hours(costs: pd.DataFrame, seeds: int, problems: int) -> float:
    """Cell-hours of a design of `seeds` seeds of every rung x objective in `costs`, evaluating `problems`
    problems: per rung the median over seeds of its cells' seconds (a seed's cells share one base evaluation),
    their evaluations scaled by the number of problems."""
    per_seed = costs.groupby(["rung", "seed"]).agg(seconds=("seconds", "sum"), eval_seconds=("eval_seconds", "sum"),
                                                  problems=("problems", "median"))
    g = per_seed.groupby("rung").median()
    return float(((g["seconds"] - g["eval_seconds"]) + g["eval_seconds"] * problems / g["problems"]).sum()
                 * seeds / 3600)


def cpus(costs: pd.DataFrame) -> str:
    """The CPUs the cells ran on, with how many cells each where there are several."""
    n = costs["cpu"].value_counts()
    return n.index[0] if len(n) == 1 else "; ".join(f"{cpu} ({c} cell{'s' * (c != 1)})" for cpu, c in n.items())


def cost_markdown(costs: pd.DataFrame) -> str:
    """What the grid's finished cells cost, and on what CPU: per rung, the median cell and its evaluations."""
    if costs.empty:
        return ""
    g = costs.groupby(["rung_order", "rung"], dropna=False)
    lines = ["| rung | cells | minutes per cell (median) | of which evaluation | cell-hours |", "|---|---|---|---|---|"]
    for (_, rung), c in g:
        lines.append(f"| {rung} | {len(c)} | {c['seconds'].median() / 60:.1f} | {c['eval_seconds'].median() / 60:.1f} "
                     f"| {c['seconds'].sum() / 3600:.2f} |")
    return (f"What it cost: {len(costs)} finished cells, {costs['seconds'].sum() / 3600:.2f} cell-hours in "
            f"{wall_hours(costs):.2f} hours of wall clock (cells side by side; time between sessions not counted), "
            f"on {cpus(costs)}. A seed's cells on one rung share its base evaluation: "
            "the first pays for it.\n\n" + "\n".join(lines) + "\n")
