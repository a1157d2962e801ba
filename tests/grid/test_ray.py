"""The Ray executor: cells side by side on a local 2-CPU cluster, with the local executor's guarantees."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from rlvr_utils.core import interrupts
from rlvr_utils.core.runs import RunDir

from conftest import REPO, TINY_GRID, merge, run_grid_cli

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

STEPS = ["steps=6", "checkpoint_every=1"]
TIMING = ("time", "seconds", "tokens_s")  # keys holding any of these are timings, the rest must match
# which cell sampled a shared step-0 evaluation depends on who got there first (evaluate.find_base_eval)
ORDER = ("reused_from",)


def grid(runs, *sets, extra=(), check=True):
    """conftest's grid command, every cell on 1 core, progress every 2 s."""
    return run_grid_cli(runs, *sets, check=check, extra_args=("--cpus-per-cell", "1", "--progress-every", "2", *extra))


def untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not any(t in k for t in TIMING) and k not in ORDER} for r in rows]


def record(run: RunDir) -> dict:
    """What a cell computed: metrics, evaluations and every sample, without timings."""
    samples = {f.name: untimed([json.loads(x) for x in f.read_text().splitlines()]) for f in sorted(run.samples.iterdir())}
    return {"metrics": untimed(run.read_metrics()), "evals": untimed(run.read_evals()), "samples": samples}


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory, fam_tiny_path):
    """The two cells' configs trained here, one after another, on the 1 thread a Ray cell gets: what the cells
    compute, whoever runs them."""
    import torch

    from rlvr_utils.core.hardware import THREADS_ENV
    from rlvr_utils.grid.profiles import cells
    from rlvr_utils.train.loop import train

    runs = tmp_path_factory.mktemp("local")
    sets = dict(p.split("=", 1) for p in merge(f"models={fam_tiny_path}", "objectives=psr,nsr", *TINY_GRID, *STEPS))
    threads, env = torch.get_num_threads(), dict(os.environ)
    os.environ[THREADS_ENV] = "1"
    try:
        for c in cells("cpu", sets):
            train(c.config, runs / c.name, log=lambda _: None)
    finally:
        os.environ.clear()
        os.environ.update(env)
        torch.set_num_threads(threads)
    tiny = Path(fam_tiny_path).name
    return {obj: record(RunDir(runs / f"{tiny}__{obj}__s0")) for obj in ("psr", "nsr")}


def _kernel_parent(run: RunDir) -> int:
    return interrupts.parent_of(run.status()["pid"])  # the notebook kernel training the cell


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except OSError:
        return False


def _span(run: RunDir) -> tuple[str, str]:
    meta = json.loads(run.notebook.read_text())["metadata"]["papermill"]
    return meta["start_time"], meta["end_time"]


def test_ray_runs_cells_side_by_side_a_killed_worker_fails_its_cell_alone_and_it_resumes(
        tmp_path, fam_tiny_path, broken_model_path, local_reference):
    # one Ray grid per scenario costs a cluster's start and a kernel per cell: the cells side by side, equal to
    # the local reference, and the killed worker are one grid's story
    tiny = Path(fam_tiny_path).name
    sets = merge(f"models={fam_tiny_path},{broken_model_path}", "objectives=psr,nsr", *TINY_GRID, *STEPS, "seeds=0")
    args = [sys.executable, "-m", "rlvr_utils.cli", "grid", "--runs", str(tmp_path), "--executor", "ray",
            "--cpus-per-cell", "1", "--retries", "0", "--progress-every", "2"]
    for s in sets:
        args += ["--set", s]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    victim = RunDir(tmp_path / f"{tiny}__nsr__s0")
    deadline = time.time() + 600
    while time.time() < deadline and not (victim.checkpoints / "latest" / "state.pt").exists():
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    kernel, killed_at = victim.status()["pid"], datetime.now(timezone.utc).isoformat()
    os.kill(_kernel_parent(victim), signal.SIGKILL)  # the Ray worker running the cell
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 1, out  # failed cells -> non-zero exit, after the others ran
    assert "1 CPU(s)" in out and "progress:" in out, out  # each cell its core; live progress from the run files
    assert not _alive(kernel), "the cell's kernel outlived its Ray worker"
    assert victim.status()["state"] == "failed" and "ray" in victim.status()["error"], victim.status()
    assert 1 <= len(victim.read_metrics()) < 6
    survivor = RunDir(tmp_path / f"{tiny}__psr__s0")
    assert survivor.status()["state"] == "done"  # the other cell went on
    start, end = _span(survivor)
    assert start < killed_at < end, f"the cells ran one after another, not side by side: {start, killed_at, end}"
    assert record(survivor) == local_reference["psr"]  # what it computes does not depend on who runs it
    assert json.loads(survivor.config.read_text())["_meta"]["hardware"]["threads"] == 1
    for obj in ("psr", "nsr"):
        assert RunDir(tmp_path / f"broken-model__{obj}__s0").status()["state"] == "failed"
    done_at = survivor.notebook.stat().st_mtime_ns

    p = grid(tmp_path, *sets, extra=["--executor", "ray"], check=False)
    assert p.returncode == 1 and p.stdout.count("done, skipped") == 1, p.stdout  # the bad model fails again
    assert survivor.notebook.stat().st_mtime_ns == done_at
    assert victim.status()["state"] == "done"
    assert "resumed from checkpoint" in victim.notebook.read_text()
    assert record(victim) == local_reference["nsr"]  # nothing lost, doubled or torn
    assert record(survivor) == local_reference["psr"]
