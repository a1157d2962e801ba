"""One grid cell: `notebooks/03_train` executed by papermill into the cell's run folder.

Every executor runs cells through `run_cell`, so they share its guarantees: the cell's kernel is told
its cores and who it must not outlive, its executed notebook lands whole (or as train.failed.ipynb),
and a failed cell is recorded in its status.json without stopping the grid.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..core.files import DamagedFile
from ..core.hardware import THREADS_ENV
from ..core.runs import NEW_BUILD_ENV, PARENT_ENV, RunDir

# The training notebook: beside the package in a checkout; RLVR_NOTEBOOKS points elsewhere.
NOTEBOOK = Path(os.environ.get("RLVR_NOTEBOOKS", Path(__file__).resolve().parents[2] / "notebooks")) / "03_train.ipynb"


@dataclass(frozen=True)
class CellResult:
    name: str
    ok: bool
    seconds: float
    error: str = ""

    def line(self) -> str:
        return f"    {self.name} " + (f"done in {fmt_seconds(self.seconds)}" if self.ok else f"FAILED: {self.error}")


def notebook_args(cell, run_dir: Path) -> dict[str, Any]:
    """The notebook's parameters for a cell: its whole resolved config, nothing left to defaults."""
    return {"config": cell.config.to_dict(), "run_dir": str(run_dir), "resume": True, "by_hand": False}


@contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


# The kernel's own log is noise on the grid's terminal: a warning that its loopback ports are unencrypted,
# and "KeyboardInterrupt caught in kernel" whenever jupyter_client's shutdown (which always interrupts
# first) lands in a message handler. A cell's real failures reach us as papermill's exception.
KERNEL_QUIET = ["--IPKernelApp.log_level=CRITICAL"]


def execute_notebook(notebook: Path, out: Path, parameters: dict[str, Any], log_output: bool = False) -> None:
    """papermill as the kit runs a notebook: from the checkout's root, a python3 kernel whose own log is quiet,
    no progress bar. Raises papermill's exception where a cell raises."""
    import papermill  # on first use: 2 s of imports (nbformat's validators) a grid that refuses its input never needs

    papermill.execute_notebook(str(notebook), str(out), parameters=parameters, cwd=str(notebook.parent.parent),
                               progress_bar=False, log_output=log_output, kernel_name="python3",
                               extra_arguments=KERNEL_QUIET)


def run_cell(cell, runs: str | Path, threads: int, log_output: bool = False, allow_new_build: bool = False) -> CellResult:
    """Execute the training notebook for one cell into runs/<cell.name>; never raises for a failed cell."""
    run = RunDir(Path(runs) / cell.name)
    busy = run.busy()
    if busy:  # another live process writes it (the same grid run twice): its status is not ours to touch
        return CellResult(cell.name, False, 0.0, busy)
    run.path.mkdir(parents=True, exist_ok=True)
    partial = run.path / ".train.partial.ipynb"
    t0 = time.perf_counter()
    try:
        # the kernel inherits these: its core budget, and who it must not outlive
        with _env(**{THREADS_ENV: str(threads), PARENT_ENV: str(os.getpid()), NEW_BUILD_ENV: str(int(allow_new_build))}):
            execute_notebook(NOTEBOOK, partial, notebook_args(cell, run.path), log_output)
        partial.rename(run.notebook)
    except Exception as e:  # noqa: BLE001 - a failed cell must not stop the grid
        if partial.exists():
            partial.rename(run.path / "train.failed.ipynb")
        try:
            if run.status().get("state") != "failed":  # the trainer records its own failure, with more detail
                run.set_status("failed", error=f"{type(e).__name__}: {str(e)[-1500:]}")
        except (OSError, DamagedFile):  # a damaged status.json or a full disk: the result below still says why
            pass
        msg = str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
        return CellResult(cell.name, False, time.perf_counter() - t0, msg)
    return CellResult(cell.name, True, time.perf_counter() - t0)


def fmt_seconds(s: float) -> str:
    """90 -> 1m30s, 3700 -> 1h01m."""
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m" if s >= 3600 else f"{int(s // 60)}m{int(s % 60):02d}s"
