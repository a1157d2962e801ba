"""Where a grid's cells run: one after another in this process tree (`local`), or as Ray tasks on a
cluster (`ray`). Adding an executor is one decorated function.

Both run every cell through `run_cell` (papermill over notebooks/03_train into the cell's folder), so
they share its guarantees: a done cell is never re-run (the grid skips it before dispatch), an
interrupted one resumes from its checkpoint, a failed one is recorded and the others go on. Each cell
is told how many cores it has (`RLVR_THREADS`, read by `hardware.use_threads`), so cells side by side
do not run more threads than cores. Progress comes from the run files, never from notebook output.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import statistics
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .cell import CellResult, fmt_seconds, prestart_kernels, run_cell
from ..core import interrupts
from ..core.files import DamagedFile
from ..core.hardware import cell_threads
from ..priors.recipes import FamilyRung, parse_spec
from ..core.registry import Registry
from ..core.runs import PARENT_ENV, RESUMABLE, RunDir, exit_with_parent


@dataclass(frozen=True)
class Resources:
    cpus: int = 0                # cores per cell (0: local, an even share of this machine's; ray, of the cluster's)
    jobs: int = 1                # local: cells at once
    gpus: float = 0.0            # GPUs per cell (Ray; 1 on GPU nodes)
    address: str | None = None   # Ray: an existing cluster ("auto" or host:port); None starts one here
    retries: int = 1             # Ray: re-runs of a cell whose worker died (each resumes from its checkpoint)
    log_output: bool = False     # local: stream the training log (papermill's log_output)
    allow_new_build: bool = False  # new cells may run on other weights than their rung's earlier cells (train)


Executor = Callable[[list, Path, Resources, Callable[[str], None]], list[CellResult]]
EXECUTORS = Registry("executor")
executor = EXECUTORS.register


@executor("local")
def run_local(cells: list, runs: Path, res: Resources, log: Callable[[str], None]) -> list[CellResult]:
    """`res.jobs` cells at a time on this machine (default one, with every core), each with an even share of the
    cores (or `res.cpus`). Several at once pay for tiny models, whose cells are mostly single-threaded start-up
    and small kernels; a SmolLM2 cell uses both cores of a 2-core machine (docs/performance.md)."""
    threads = res.cpus or max(1, cell_threads() // res.jobs)
    out: list[CellResult] = []
    if res.jobs <= 1 and cells:
        prestart_kernels(threads, res.allow_new_build)  # its imports run while the rungs resolve
    # the family's rungs are built here once, with every core, before cells wait on each other for them
    family = list(dict.fromkeys(c.config.model for c in cells if isinstance(parse_spec(c.config.model), FamilyRung)))
    if family:
        from ..priors.resolve import resolve_model  # only then: it brings transformers, which dispatching cells never needs

        for spec in family:
            log(f"rung {spec}: {resolve_model(spec)}")

    def start(i: int, c, now: str) -> None:
        state = RunDir(runs / c.name).status().get("state")
        log(f"[{i + 1}/{len(cells)}] {c.name}: {'resuming' if state in RESUMABLE else now}")

    if res.jobs <= 1:
        for i, c in enumerate(cells):
            start(i, c, "running")
            out.append(r := run_cell(c, runs, threads, res.log_output, res.allow_new_build))
            log(r.line())
            if r.busy:  # another grid on this folder: it runs the rest as well; stop here, touching nothing
                break
        return out
    return _run_pool(cells, runs, res, threads, start, log)


def _run_pool(cells: list, runs: Path, res: Resources, threads: int, start, log) -> list[CellResult]:
    """`res.jobs` cells at once, each in a process of its own (papermill in threads shares one process's state),
    each dying with us. A busy cell or a signal stops the queue; the running cells' kernels are told (a signal
    is handed on to the workers, which hand it to their kernels) and their runs record where they stopped."""
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(res.jobs, mp_context=ctx, initializer=_die_with,
                               initargs=(os.getpid(), threads, res.allow_new_build))
    out: list[CellResult] = []
    try:
        futures = {}
        for i, c in enumerate(cells):
            start(i, c, "queued")
            futures[pool.submit(run_cell, c, runs, threads, res.log_output, res.allow_new_build)] = c
        stopped: interrupts.Interrupted | None = None  # a cell's worker was signalled (its kernel has stopped)
        with interrupts.deferred(lambda sig: [interrupts.signal_quietly(w.pid, sig) for w in _workers(pool)]):
            waiting, deadline = set(futures), None
            while waiting:
                done, waiting = wait(waiting, timeout=0.5, return_when=FIRST_COMPLETED)
                for f in (f for f in done if not f.cancelled()):
                    try:
                        out.append(r := f.result())
                        log(r.line())
                    except interrupts.Interrupted as e:
                        stopped = e
                    except Exception as e:  # noqa: BLE001 - a worker that died: the cell failed, the others go on
                        out.append(r := CellResult(futures[f].name, False, 0.0, f"{type(e).__name__}: {e}"[:300]))
                        log(r.line())
                if deadline is None and (stopped or interrupts.caught() or any(r.busy for r in out)):
                    deadline = time.monotonic() + interrupts.GRACE + 4  # the queue stops; running cells end
                    for f in waiting:
                        f.cancel()
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError("cells did not stop")  # their workers are ended below
        if stopped:
            raise stopped
    except BaseException:
        # the pool's own exit would wait for every queued cell: drop the queue and end the running cells' workers
        # (their kernels die with them); those cells resume from their checkpoints
        workers = _workers(pool) or multiprocessing.active_children()  # a broken pool has forgotten its own
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in workers:
            proc.terminate()
        raise
    pool.shutdown()
    return out


def _workers(pool: ProcessPoolExecutor) -> list:
    return list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them


def _die_with(parent: int, threads: int, allow_new_build: bool) -> None:
    """A local pool worker's initializer: die with the grid's driver (and take the cell's kernel along); a signal
    is only recorded here (its running cell hands it to the kernel), never raised into the pool's machinery. The
    process its cells' kernels fork from starts warming now."""
    os.environ[PARENT_ENV] = str(parent)
    exit_with_parent()
    interrupts.install(raise_=False)
    prestart_kernels(threads, allow_new_build)


@executor("ray")
def run_ray(cells: list, runs: Path, res: Resources, log: Callable[[str], None]) -> list[CellResult]:
    """Each cell a Ray task with its declared resources; as many at once as the cluster holds.

    A worker that dies mid-cell (node lost, OOM-killed) makes Ray re-run the task up to `res.retries`
    times; the re-run resumes from the cell's last checkpoint. A cell still failing is recorded as
    failed and the rest go on. Run folders must be on a path every node sees (the same `runs`).
    """
    try:
        import ray
    except ImportError as e:
        raise ValueError("--executor ray needs Ray: pip install 'rlvr-utils[ray]'") from e
    if not cells:
        return []

    gpus = res.gpus
    if res.address:
        _check_reachable(res.address)
        try:
            ray.init(address=res.address, log_to_driver=res.log_output)
        except (ConnectionError, RuntimeError) as e:
            raise ValueError(f"--address {res.address}: no Ray cluster reachable there ({e}); {START_RAY}") from e
    else:
        ray.init(include_dashboard=False, log_to_driver=res.log_output)
        if not gpus and ray.cluster_resources().get("GPU", 0):
            gpus = 1.0  # a GPU node: one card per cell
    try:
        have = ray.cluster_resources()
        # default share: a GPU cell takes its card's part of the cores; CPU cells split the cores evenly
        cpus = res.cpus or max(1, int(have.get("CPU", 1) // (have.get("GPU", 1) if gpus else len(cells))))
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=res.retries, retry_exceptions=False)(run_cell)
        log(f"ray: {len(cells)} cells, {cpus} CPU(s) and {gpus:g} GPU(s) each, cluster {dict(have)}")
        pending = {task.remote(c, str(runs.resolve()), cpus, res.log_output, res.allow_new_build): c for c in cells}
        out: list[CellResult] = []
        t0 = time.perf_counter()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            c = pending.pop(ready[0])
            try:
                r = ray.get(ready[0])
            except Exception as e:  # noqa: BLE001 - the worker died past its retries: record, go on
                RunDir(runs / c.name).set_status("failed", error=f"ray: {type(e).__name__}: {str(e)[-1500:]}")
                r = CellResult(c.name, False, time.perf_counter() - t0, f"ray: {type(e).__name__}")
            out.append(r)
            log(r.line())
        return out
    finally:
        ray.shutdown()


START_RAY = "start one with `ray start --head` and pass --address auto, or leave --address out to start one here"


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A host:port address answers within `timeout` seconds, or the grid stops saying so: ray.init would wait on
    an address nobody listens at for minutes, with nothing to show for it."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", or a form ray.init itself resolves (and fails fast on)
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as e:
        raise ValueError(f"--address {address}: no Ray cluster reachable there ({e.strerror or e}); {START_RAY}") from None


class Progress(threading.Thread):
    """Every `every` seconds, one line per change: each running cell's step / total and last reward, and
    the grid's ETA. Reads the run files only."""

    def __init__(self, runs: Path, cells: list, log: Callable[[str], None], every: float = 30.0):
        super().__init__(daemon=True)
        self.runs, self.cells, self.log, self.every = runs, cells, log, every
        self.stop = threading.Event()
        self.t0 = time.perf_counter()
        self.start_steps = self._steps_done()
        self.start_work = sum(RunDir(self.runs / c.name).work_seconds() for c in self.cells)
        self.last = ""

    def _steps_done(self) -> int:
        return sum(self._cell(c)[0] for c in self.cells)

    def _cell(self, c) -> tuple[int, float | None, str]:
        run = RunDir(self.runs / c.name)
        state = run.status().get("state", "pending")
        if state == "done":
            return c.config.steps, None, state
        # a torn last line (a grid killed mid-append) is the cell's to repair when it resumes, not a reason to refuse
        rows = run.read_metrics(torn="skip") if run.metrics.exists() else []
        return (rows[-1]["step"], rows[-1].get("reward_mean"), state) if rows else (0, None, state)

    def _work_left(self, work: dict[str, float]) -> float | None:
        """Seconds of work the unfinished cells still need, each expected to take what finished cells of
        its model and objective took (else of its model, else of its objective, else any): cells of one grid
        differ several-fold (a weak rung's NSR trains every sample, a strong rung's few), and evaluations,
        the model's more than the objective's (a rambling base samples to the token limit), are not steps.
        `work`: each of this grid's cells' seconds so far. None until some cell in the runs folder has finished."""
        done = []
        for d in (p for p in self.runs.iterdir() if (p / "config.json").exists()) if self.runs.exists() else []:
            run = RunDir(d)
            if run.status().get("state") == "done":
                cfg = run.saved_config()
                done.append((cfg.get("model"), cfg.get("objective"), run.work_seconds()))
        if not done:
            return None
        left = 0.0
        for c in self.cells:
            if RunDir(self.runs / c.name).status().get("state") == "done":
                continue
            key = (str(c.config.model), c.config.objective)
            like = ([w for m, o, w in done if (m, o) == key] or [w for m, _, w in done if m == key[0]]
                    or [w for _, o, w in done if o == key[1]] or [w for *_, w in done])
            left += max(statistics.median(like) - work[c.name], 0.0)
        return left

    def line(self) -> tuple[str, str]:
        """(what changed, the line): the ETA alone changing is not news."""
        parts, done = [], 0
        for c in self.cells:
            step, reward, state = self._cell(c)
            done += step
            if state == "running":
                parts.append(f"{c.name} step {step}/{c.config.steps}" +
                             (f" reward {reward:.3f}" if reward is not None else ""))
        total = sum(c.config.steps for c in self.cells)
        elapsed = time.perf_counter() - self.t0
        work = {c.name: RunDir(self.runs / c.name).work_seconds() for c in self.cells}
        left = self._work_left(work)
        if left is not None:  # work-seconds per wall second: ~1 one cell at a time, more side by side
            pace = (sum(work.values()) - self.start_work) / elapsed
            eta = f"ETA {fmt_seconds(left / max(pace, 1.0))} (from finished cells' minutes)"
        else:
            rate = (done - self.start_steps) / elapsed
            eta = f"ETA {fmt_seconds((total - done) / rate)}" if rate > 0 else "ETA after the first step"
        cells = " | " + " | ".join(parts) if parts else ""
        return f"{done}{cells}", f"  progress: {done}/{total} steps, {eta}{cells}"

    def run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                key, line = self.line()
            except (OSError, ValueError, DamagedFile):  # a file replaced or mid-append under us: next time
                continue
            if key != self.last:
                self.last = key
                self.log(line)
