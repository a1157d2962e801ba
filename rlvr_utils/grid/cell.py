"""One grid cell: `notebooks/03_train` executed by papermill into the cell's run folder.

Every executor runs cells through `run_cell`, so they share its guarantees: the cell is claimed (its
folder's lock) before anything of it is touched, and held for its kernel, so a second grid on the same
folder never writes it; the kernel is told its cores and who it must not outlive; its executed notebook
lands whole (or as train.failed.ipynb); a failed cell is recorded in its status.json without stopping
the grid; Ctrl-C or SIGTERM stop the kernel's run, which records it as interrupted.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..core import interrupts
from ..core.files import DamagedFile, FolderBusy
from ..core.hardware import THREADS_ENV
from ..core.runs import NEW_BUILD_ENV, PARENT_ENV, RunDir
from ..core.startup import skip_unused_validators
from . import kernels

# The training notebook: beside the package in a checkout; RLVR_NOTEBOOKS points elsewhere.
NOTEBOOK = Path(os.environ.get("RLVR_NOTEBOOKS", Path(__file__).resolve().parents[2] / "notebooks")) / "03_train.ipynb"
KERNEL_CWD = NOTEBOOK.parent.parent  # a notebook runs from the checkout's root


@dataclass(frozen=True)
class CellResult:
    name: str
    ok: bool
    seconds: float
    error: str = ""
    busy: bool = False  # not run: another live process holds the cell (`error` names it and its pid)

    def line(self) -> str:
        return f"    {self.name} " + (f"done in {fmt_seconds(self.seconds)}" if self.ok else
                                     f"{'BUSY' if self.busy else 'FAILED'}: {self.error}")


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


def execute_notebook(notebook: Path, out: Path, parameters: dict[str, Any], log_output: bool = False,
                     forked: bool = False) -> None:
    """papermill as the kit runs a notebook: from the checkout's root, a python3 kernel whose own log is quiet, no
    progress bar; `forked`: the kernel forked from a process that has the training notebook's imports done
    (`kernels`), for a grid's many cells. Raises papermill's exception where a cell raises."""
    skip_unused_validators()
    import papermill  # on first use: imports a grid that refuses its input never needs

    papermill.execute_notebook(str(notebook), str(out), parameters=parameters, cwd=str(notebook.parent.parent),
                               progress_bar=False, log_output=log_output, kernel_name="python3",
                               extra_arguments=KERNEL_QUIET,
                               **({"kernel_manager_class": kernels.manager_class()} if forked else {}))


def kernel_env(threads: int, allow_new_build: bool = False) -> dict[str, str]:
    """What a cell's kernel is told beyond this process's environment: its core budget, who it must not outlive,
    whether it may start a new build of its rung."""
    return {THREADS_ENV: str(threads), PARENT_ENV: str(os.getpid()), NEW_BUILD_ENV: str(int(allow_new_build))}


def prestart_kernels(threads: int, allow_new_build: bool = False) -> None:
    """Warm the process cells' kernels will be forked from (`kernels.prestart`) while this one does other work."""
    kernels.prestart({**os.environ, **kernel_env(threads, allow_new_build)}, KERNEL_CWD)


def run_cell(cell, runs: str | Path, threads: int, log_output: bool = False, allow_new_build: bool = False) -> CellResult:
    """Execute the training notebook for one cell into runs/<cell.name>; never raises for a failed cell. A cell
    another live process holds is not touched (a `busy` result); Ctrl-C or SIGTERM raise `Interrupted` once
    the kernel has stopped, the cell recorded as interrupted."""
    if interrupts.caught():  # a pool worker whose grid was interrupted: its queued cells do not start
        raise interrupts.Interrupted(interrupts.caught())
    run = RunDir(Path(runs) / cell.name)
    try:
        run.lock()  # held until the kernel is done: its trainer runs under it (`RunDir.lock`), nobody else can
    except FolderBusy as e:  # another grid on this folder runs it: nothing of the cell is ours to touch
        return CellResult(cell.name, False, 0.0, str(e), busy=True)
    except OSError as e:  # a read-only folder, a dangling link: this cell fails, the others go on
        return CellResult(cell.name, False, 0.0, str(e))
    try:
        return _execute(cell, run, threads, log_output, allow_new_build)
    finally:
        run.unlock()


def _execute(cell, run: RunDir, threads: int, log_output: bool, allow_new_build: bool) -> CellResult:
    partial = run.path / ".train.partial.ipynb"
    t0 = time.perf_counter()
    try:
        with _env(**kernel_env(threads, allow_new_build)):  # the kernel inherits them
            # a signal goes to the kernel (its run records it and stops), not into papermill's asyncio loop
            with interrupts.deferred(interrupts.stop_children("ipykernel")):
                execute_notebook(NOTEBOOK, partial, notebook_args(cell, run.path), log_output, forked=True)
        partial.rename(run.notebook)
    except interrupts.Interrupted as e:
        partial.unlink(missing_ok=True)  # the run's own records say where it stopped; a rerun resumes it
        try:
            if run.status().get("state") != "interrupted":  # a kernel killed, or stopped before its run began
                run.set_status("interrupted", error=f"interrupted ({e.name})")
        except (OSError, DamagedFile):
            pass
        raise
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
