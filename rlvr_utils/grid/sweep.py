"""Run `notebooks/03_train` with papermill over a model x objective x seed (x lambda) grid.

One folder per cell. Completed cells are skipped, a failed cell is recorded and the rest go on,
an interrupted cell resumes from its checkpoint (the notebook calls `train(..., resume=True)`).
Where the cells run (here one at a time, or on a Ray cluster) is `executors.py`'s concern.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.config import TrainConfig
from .executors import EXECUTORS, Progress, Resources
from .profiles import cells, settings_diff
from ..core.files import FolderBusy
from ..train.preflight import check_inputs
from ..core.runs import RunDir


def run_grid(profile: str, runs: str | Path, sets: dict[str, Any] | None = None, dry_run: bool = False,
             log=print, executor: str = "local", resources: Resources | None = None,
             progress_every: float = 30.0) -> int:
    """Execute every cell not yet done with `executor` (executors.EXECUTORS). Returns the number of failed cells."""
    dispatch = EXECUTORS.pick(executor)
    todo = cells(profile, sets)
    runs = Path(runs)
    if dry_run:
        base = TrainConfig().to_dict()
        log(f"{len(todo)} cells; settings that differ from TrainConfig's defaults (the rest are those defaults):")
        for c in todo:
            st = RunDir(runs / c.name).status()
            diff = ", ".join(f"{k}={v!r} (default {base[k]!r})" for k, v in settings_diff(c.config).items())
            why = f"  [{st['error'][:200]}]" if st.get("state") == "failed" and st.get("error") else ""
            log(f"{st.get('state', 'pending'):8s} {c.name}  {diff}{why}")
        return 0
    for c in {(c.config.model, c.config.data, c.config.device): c for c in todo}.values():
        check_inputs(c.config)  # a bad model path or an unusable device fails the grid, not each cell
    pending = []
    for c in todo:
        run = RunDir(runs / c.name)
        if run.status().get("state") == "done":
            log(f"{c.name}: done, skipped")
            continue
        busy = run.busy()
        if busy:  # the same grid running twice: refuse before either touches the other's cells
            raise FolderBusy(busy)
        pending.append(c)
    log(f"grid {profile}: {len(pending)} of {len(todo)} cells to run ({executor} executor)")
    progress = Progress(runs, pending, log, progress_every)
    progress.start()
    try:
        results = dispatch(pending, runs, resources or Resources(), log)
    finally:
        progress.stop.set()
    failed = [r.name for r in results if not r.ok]
    log(f"grid {profile}: {len(todo) - len(failed)} done, {len(failed)} failed" +
        (f" ({', '.join(failed)})" if failed else ""))
    return len(failed)
