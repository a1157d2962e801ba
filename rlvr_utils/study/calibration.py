"""A study's step size, calibrated outside it by its pre-registered rule: the smallest lr at which every calibration
cell moved its policy beyond re-sampling noise (per-problem change of sampled pass@1 over the noise between two base
evaluations, > 1) and no NSR cell collapsed (its reward rate over its last steps below half its step-1 value).

It runs on the weakest rung on which both halves of the rule are defined (`calibration_rung`): a PSR cell must
see correct samples to move and an NSR cell a step-1 reward rate to halve, which a rung that solves nothing gives
neither (the prereg's *Amendment 3*).

One grid folder per lr (`make controls-calibration`: runs/controls-calibration/lr4e-5, ...); each cell's lr is read
from its own config, not from the folder's name. `python -m rlvr_utils.study.calibration runs/controls-calibration`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.files import emit
from ..grid.profiles import cells as profile_cells
from ..priors.ladder import Rung
from .dynamics import cell_movement
from .frames import Run, load_grid
from .perseed import run_deltas

MOVED = 1.0      # change / noise above this: the policy moved more than sampling it again would show
COLLAPSE = 0.5   # NSR's reward rate over its last steps below this fraction of its step-1 value: a collapse
LAST = 5         # the last steps the collapse test averages (one batch is noisy on a weak rung)
LEAST_CORRECT = 100  # a calibration rung's every build gives a PSR cell at least this many correct samples (expected)


def calibration_rung(rungs: list[Rung], samples: int, least: int = LEAST_CORRECT) -> Rung | None:
    """The weakest rung (prior-axis order) each of whose builds, at its base sampled pass@1, gives a cell that trains
    on `samples` samples at least `least` correct ones in expectation; None if no rung does."""
    for rung in rungs:
        if min(rung.values(1)) * samples >= least:
            return rung
    return None


def collapse_ratio(r: Run, last: int = LAST) -> float:
    """A cell's mean reward rate (correct_ratio) over its last `last` steps over its step-1 value; NaN where step 1
    had no correct sample (no rate to halve) or the metrics lack it."""
    m = r.metrics.sort_values("step") if "step" in r.metrics else pd.DataFrame()
    if "correct_ratio" not in m or m.empty or not m["correct_ratio"].iloc[0] > 0:
        return float("nan")
    return float(m["correct_ratio"].iloc[-last:].mean() / m["correct_ratio"].iloc[0])


def calibration_cells(folders: list[str | Path]) -> pd.DataFrame:
    """One row per finished cell of every folder: its lr, rung, objective, seed, movement ratio and collapse ratio."""
    frames = []
    for d in folders:
        runs = load_grid(d)
        cells = cell_movement(runs, run_deltas(runs))
        if cells.empty:
            continue
        by_name = {r.name: r for r in runs}
        cells["lr"] = [by_name[n].config.get("lr") for n in cells["run"]]
        cells["collapse_ratio"] = [collapse_ratio(by_name[n]) for n in cells["run"]]
        cells["folder"] = str(d)
        frames.append(cells)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def judged(cells: pd.DataFrame) -> pd.DataFrame:
    """Per lr: the cells, the least movement, whether every cell moved, whether any NSR cell collapsed."""
    rows = []
    for lr, g in cells.groupby("lr"):
        nsr = g[g["objective"] == "nsr"]
        collapsed = bool((nsr["collapse_ratio"] < COLLAPSE).any())
        rows.append({"lr": lr, "cells": len(g), "least_movement": float(g["ratio"].min()),
                     "all_moved": bool((g["ratio"] > MOVED).all()), "collapsed": collapsed,
                     "nsr_least_collapse_ratio": float(nsr["collapse_ratio"].min()) if len(nsr) else np.nan})
    out = pd.DataFrame(rows)
    if not out.empty:
        out["meets"] = out["all_moved"] & ~out["collapsed"]
    return out


def chosen_lr(cells: pd.DataFrame, expected: int | None = None) -> float | None:
    """The rule's lr: the smallest that meets it, among lrs whose every cell finished (`expected` cells each)."""
    j = judged(cells)
    if j.empty:
        return None
    j = j[j["cells"] == expected] if expected else j
    ok = j[j["meets"]]
    return float(ok["lr"].min()) if len(ok) else None


def calibration_markdown(cells: pd.DataFrame, expected: int | None = None) -> str:
    """Each cell's movement and collapse ratio per lr, then the rule's verdict per lr and the lr it picks."""
    if cells.empty:
        return "No finished calibration cell yet.\n"
    out = ["| lr | build | objective | seed | change / noise | KL to π₀ | NSR's last-steps reward rate / step 1 |",
           "|---|---|---|---|---|---|---|"]
    for r in cells.sort_values(["lr", "rung_order", "run"]).itertuples():
        col = "—" if r.objective != "nsr" or np.isnan(r.collapse_ratio) else f"{r.collapse_ratio:.2f}"
        out.append(f"| {r.lr:g} | {r.run.split('__')[0]} | {r.objective} | {r.seed} | {r.ratio:.2f} | "
                   f"{r.kl_to_init:.4f} | {col} |")
    out += ["", f"Per lr (moved: every cell's change / noise > {MOVED:g}; collapsed: an NSR cell's reward rate over "
            f"its last {LAST} steps below {COLLAPSE:g} of its step-1 value):", "",
            "| lr | cells | least change / noise | every cell moved | an NSR cell collapsed | meets the rule |",
            "|---|---|---|---|---|---|"]
    for r in judged(cells).itertuples():
        done = "" if not expected or r.cells == expected else f" (of {expected})"
        out.append(f"| {r.lr:g} | {r.cells}{done} | {r.least_movement:.2f} | {'yes' if r.all_moved else 'no'} | "
                   f"{'yes' if r.collapsed else 'no'} | {'yes' if r.meets else 'no'} |")
    lr = chosen_lr(cells, expected)
    out += ["", f"**The study's lr: {lr:g}**, the smallest that meets the rule with every cell finished." if lr else
            "**No lr meets the rule yet** among those with every cell finished: the calibration goes on (a larger "
            "lr, or the cells still to run)."]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="the calibration's folder: one grid folder per lr under it")
    ap.add_argument("--profile", default=None, help="the calibration's grid profile: an lr is judged once all its "
                    "cells are finished")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    expected = len(profile_cells(a.profile)) if a.profile else None
    folders = sorted(p for p in Path(a.root).iterdir() if p.is_dir())
    text = calibration_markdown(calibration_cells(folders), expected)
    return emit(text, a.out)


if __name__ == "__main__":
    raise SystemExit(main())
