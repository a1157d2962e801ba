"""The grid over papermill: cells run, a failed cell is isolated, done cells are skipped, a killed grid resumes;
its progress line and the build flag reach the cells."""

import pytest
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import TINY_GRID as TINY
from conftest import default_sigint, merge, sets
from conftest import run_grid_cli as grid

from rlvr_utils.grid.profiles import cells
from rlvr_utils.core.runs import RunDir

pytestmark = pytest.mark.slow  # real models, papermill, vLLM or the grading pool: `make test`, not test-fast

REPO = Path(__file__).resolve().parents[2]


def test_progress_eta_from_finished_cells_minutes(tmp_path):
    """The grid's ETA: each unfinished cell expected to take what finished cells of its model and
    objective took (else of its model, else of its objective), less what it has done; not steps x a
    rate, since cells of one grid differ several-fold and evaluations are not steps."""
    import json

    from rlvr_utils.grid.executors import Progress
    from rlvr_utils.core.files import append_jsonl
    from rlvr_utils.core.runs import RunDir

    grid = cells("prior", {"seeds": "0,1", "objectives": "psr,nsr,w_reinforce", "models": "warm:n=0,warm:n=200,warm:n=1000"})
    work = {"warm-n0__psr__s0": 600.0, "warm-n0__nsr__s0": 3000.0, "warm-n1000__nsr__s0": 1200.0}
    for c in grid:
        run = RunDir(tmp_path / c.name)
        run.path.mkdir()
        run.config.write_text(json.dumps({"model": c.config.model, "objective": c.config.objective}))
        if c.name in work:
            append_jsonl(run.metrics, [{"step": 1, "time_total": work[c.name] - 100.0}])
            append_jsonl(run.evals, [{"step": 20, "seconds": 100.0}])
            run.set_status("done")
    started = RunDir(tmp_path / "warm-n0__nsr__s1")
    append_jsonl(started.metrics, [{"step": 5, "time_total": 1000.0}])
    pending = [c for c in grid if c.name not in work and "w_reinforce" not in c.name and "n200" not in c.name
               or c.name in ("warm-n0__w_reinforce__s0", "warm-n200__psr__s0")]
    line = Progress(tmp_path, pending, print).line()[1]
    # n0 psr s1: 600; n0 nsr s1: 3000 - 1000 done; n1000 psr s0, s1: no n1000 PSR yet, n1000's 1200 each;
    # n1000 nsr s1: 1200; n0 w_reinforce s0: no W-REINFORCE yet, n0's median (600, 3000) = 1800;
    # n200 psr s0: no n200 cell yet, PSR's 600. 600 + 2000 + 1200 + 1200 + 1200 + 1800 + 600 = 8600 s
    assert "ETA 2h23m (from finished cells' minutes)" in line, line
    assert "5/" in line  # steps done so far still counted
    with open(started.metrics, "a") as f:  # the grid was killed mid-append: a torn last line
        f.write('{"step": 6, "time_to')
    line = Progress(tmp_path, pending, print).line()[1]  # a restarted grid reads on; the cell repairs its own file
    assert "5/" in line, line


def test_allow_new_build_reaches_the_cell_and_no_further(tmp_path, monkeypatch):
    # `rlvr grid --allow-new-build` reaches train() in the notebook kernel as its environment; the papermill
    # call is replaced by one that records what the kernel would inherit (the thing under test is the executor)
    import os

    import papermill

    from rlvr_utils.grid.executors import run_cell
    from rlvr_utils.core.runs import NEW_BUILD_ENV

    seen = []

    def execute(src, out, **kw):
        seen.append(os.environ.get(NEW_BUILD_ENV))
        Path(out).write_text("{}")

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    monkeypatch.setenv(NEW_BUILD_ENV, "1")  # a stray export must not open every cell
    cell = cells("cpu", {"objectives": "psr", "seeds": "0"})[0]
    assert run_cell(cell, tmp_path, 1).ok and run_cell(cell, tmp_path, 1, allow_new_build=True).ok
    assert seen == ["0", "1"] and os.environ[NEW_BUILD_ENV] == "1"  # and restored afterwards


def test_grid_runs_cells_and_isolates_failure(tiny_grid):
    runs, p, tiny = tiny_grid
    assert p.returncode == 1, p.stdout  # one failed cell -> non-zero exit, after the others ran
    assert "2 done, 2 failed" in p.stdout
    assert "[IPKernelApp]" not in p.stderr, p.stderr[-2000:]  # kernels' own log is noise on the grid's terminal
    for obj in ("psr", "nsr"):
        cell = RunDir(runs / f"{tiny}__{obj}__s0")
        assert cell.status()["state"] == "done"
        assert cell.notebook.exists() and [m["step"] for m in cell.read_metrics()] == [1, 2]
        nb = json.loads(cell.notebook.read_text())
        assert any(c.get("outputs") for c in nb["cells"])  # executed
        bad = RunDir(runs / f"broken-model__{obj}__s0")  # a model folder no library loads
        assert bad.status()["state"] == "failed" and "no-such-architecture" in bad.status()["error"]


def test_grid_rerun_skips_done_cells_and_dry_run(tiny_grid, fam_tiny_path):
    runs, _, tiny = tiny_grid
    nb = runs / f"{tiny}__psr__s0" / "train.ipynb"
    before = nb.stat().st_mtime_ns
    p = grid(runs, f"models={fam_tiny_path}", "objectives=psr,nsr", *TINY)
    assert p.stdout.count("done, skipped") == 2 and nb.stat().st_mtime_ns == before
    out = run_main(["grid", "--profile", "cpu", "--runs", str(runs), "--dry-run",
                    *sets(f"models={fam_tiny_path}", "objectives=psr,w_reinforce", *TINY)])
    assert out[0] == 0 and "done" in out[1] and "pending" in out[1] and "w_reinforce" in out[1]


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """`rlvr argv` in this process (what the command runs): (exit status, stdout, stderr)."""
    import contextlib
    import io

    from rlvr_utils import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def test_grid_rejects_unknown_parameter(tmp_path):
    code, _, err = run_main(["grid", "--profile", "cpu", "--runs", str(tmp_path), "--set", "not_a_param=3"])
    assert code == 2 and "not_a_param" in err and "parameters cell" in err
    code, _, err = run_main(["grid", "--profile", "cpu", "--runs", str(tmp_path), "--set", "objectives=psr,ppo"])
    assert code == 2 and "ppo" in err
    assert not any(tmp_path.iterdir())


def test_grid_killed_mid_cell_resumes_from_checkpoint(tmp_path, fam_tiny_path):
    sets = merge(f"models={fam_tiny_path}", "objectives=psr,nsr", *TINY, "steps=6")
    args = [sys.executable, "-m", "rlvr_utils.cli", "grid", "--runs", str(tmp_path)]
    for s in sets:
        args += ["--set", s]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    tiny = Path(fam_tiny_path).name
    second = RunDir(tmp_path / f"{tiny}__nsr__s0")
    deadline = time.time() + 600
    # wait until the first cell is done and the second has a checkpoint, then kill everything
    while time.time() < deadline and not (second.checkpoints / "latest" / "state.pt").exists():
        assert proc.poll() is None, "the grid ended before its second cell checkpointed"
        time.sleep(0.05)  # a tiny step takes a fraction of a second: kill within one step of the first checkpoint
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = RunDir(tmp_path / f"{tiny}__psr__s0")
    assert first.status()["state"] == "done" and second.status()["state"] == "running"
    done_at = first.notebook.stat().st_mtime_ns
    assert 1 <= len(second.read_metrics()) < 6
    p = grid(tmp_path, *sets)
    assert "resuming" in p.stdout and p.stdout.count("done, skipped") == 1
    assert first.notebook.stat().st_mtime_ns == done_at
    assert [m["step"] for m in second.read_metrics()] == [1, 2, 3, 4, 5, 6]  # nothing lost or doubled
    assert "resumed from checkpoint" in second.notebook.read_text()
    for f in (second.metrics, second.evals):  # every line parses: no torn writes
        assert all(json.loads(x) for x in f.read_text().splitlines())
    assert json.loads(second.config.read_text())["steps"] == 6


def test_ctrl_c_stops_a_grid_of_parallel_cells_and_they_resume(tmp_path, fam_tiny_path):
    # SIGINT to the grid's driver alone (`kill -INT`; a terminal's Ctrl-C also reaches the cells): the grid must stop
    # within seconds, with one line, leaving no cell running, and not go on through its queue (a process pool's own
    # exit waits for every queued cell); a rerun resumes the interrupted cells
    sets = merge(f"models={fam_tiny_path}", "objectives=psr,nsr", "seeds=0,1", *TINY, "steps=8")
    args = [sys.executable, "-m", "rlvr_utils.cli", "grid", "--runs", str(tmp_path), "--jobs", "2"]
    for s in sets:
        args += ["--set", s]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=default_sigint)
    deadline = time.time() + 600
    while time.time() < deadline and not list(tmp_path.glob("*/checkpoints/latest/state.pt")):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGINT)
    t0 = time.time()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and time.time() - t0 < 60, (proc.returncode, out[-2000:], err[-3000:])
    ours = [x for x in err.splitlines() if x.startswith("rlvr:")]  # kernels share the stderr: their warnings interleave
    assert len(ours) == 1 and ours[0].startswith("rlvr: interrupted") and "Traceback" not in err, err[-3000:]
    time.sleep(2)  # the cells' kernels die with their workers
    left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert not left, f"processes of the grid still running: {left}"
    runs = [RunDir(p) for p in sorted(tmp_path.iterdir()) if p.is_dir()]
    assert sum(r.status().get("state") == "done" for r in runs) < 4  # it did not finish its queue
    p = grid(tmp_path, *sets, extra_args=("--jobs", "2"))
    assert p.stdout.count("done in") + p.stdout.count("done, skipped") == 4
    for r in (RunDir(tmp_path / c.name) for c in cells("cpu", {k: v for k, v in (x.split("=", 1) for x in sets)})):
        assert r.status()["state"] == "done" and [m["step"] for m in r.read_metrics()] == list(range(1, 9))
