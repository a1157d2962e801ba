"""A family study's cells end to end, their kernels forked from a warm process (`grid.kernels`) or started afresh.

`rlvr grid --profile family` on the committed 1m/1M rung (runs/family-rungs), one seed's three objectives (the
study's unit: the base evaluation is sampled once and shared), the static engine, one cell at a time on every
core; also the first cell alone (a grid of one, where nothing is shared and the zygote's imports are not saved).
The two ways alternate within each repeat, since this machine's speed drifts. Reported: `rlvr grid`'s wall clock
and each cell's own (its line "done in"), per way and repeat.

Results: bench/results/family_cells.json and a table on stdout.
Usage: python bench/family_cells.py [--repeats 2] [--rungs runs/family-rungs]
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNG = "family:size=1m,tokens=1000000"


def grid(runs: Path, objectives: str, fork: bool, rungs: Path) -> dict:
    env = {**os.environ, "RLVR_FORK_KERNELS": str(int(fork)), "RLVR_FAMILY_CACHE": str(rungs)}
    args = [sys.executable, "-m", "rlvr_utils.cli", "grid", "--profile", "family", "--runs", str(runs), "--jobs", "1",
            "--set", f"models={RUNG}", "--set", f"objectives={objectives}", "--set", "seeds=0",
            "--set", "engine=static"]
    t0 = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"grid failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    cells = [int(m) * 60 + int(s) for m, s in re.findall(r"done in (\d+)m(\d+)s", p.stdout)]
    return {"wall_s": round(wall, 1), "cells_s": cells, "per_cell_s": round(wall / len(cells), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rungs", default=str(REPO / "runs" / "family-rungs"))
    a = ap.parse_args()
    rows = []
    for r in range(a.repeats):
        for objectives in ("psr,nsr,w_reinforce", "psr"):
            for fork in ((True, False) if r % 2 == 0 else (False, True)):
                with tempfile.TemporaryDirectory() as tmp:
                    row = {"repeat": r, "cells": objectives, "forked": fork,
                           **grid(Path(tmp) / "runs", objectives, fork, Path(a.rungs))}
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = REPO / "bench" / "results" / "family_cells.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "rows": rows}, indent=1))
    print("\n| cells | kernels | rlvr grid wall clock (s), per repeat | per cell (s) |\n|---|---|---|---|")
    for objectives in ("psr,nsr,w_reinforce", "psr"):
        for fork in (True, False):
            sel = [x for x in rows if x["cells"] == objectives and x["forked"] == fork]
            print(f"| {objectives} | {'forked' if fork else 'fresh'} | {', '.join(str(x['wall_s']) for x in sel)} "
                  f"| {', '.join(str(x['per_cell_s']) for x in sel)} |")


if __name__ == "__main__":
    main()
