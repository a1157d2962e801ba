"""The fault matrix's rows for interrupts, two grids on one folder, full disks and the messages around them: each
row ends in its exit status with one line carrying a word, no traceback on the terminal, and a run folder that
existed left as it was (or recorded as the row says). The real CLI runs in subprocesses wherever a signal, a
process limit or a second process is the fault; the tiny model is the family's rung the suite builds."""

import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import FAMILY_TINY, REPO, TINY_GRID, TINY_RUN, default_sigint, merge, sets
from test_faults_cli import _hold, one_error_line, run_main, tree_hashes

from rlvr_utils.core import interrupts
from rlvr_utils.core.runs import RunDir

pytestmark = pytest.mark.slow  # trains the tiny model, in grids and subprocesses

NOISE = ("Traceback", "Task exception", "KeyboardInterrupt", "\x1b[")  # a traceback, asyncio's, a kernel's in colour


def clean(err: str, status_line: str) -> None:
    """One `rlvr:` line on stderr, starting `status_line`, and none of what an unhandled signal prints."""
    ours = [x for x in err.splitlines() if x.startswith("rlvr:")]
    assert len(ours) == 1 and ours[0].startswith(status_line), err[-3000:]
    assert not any(n in err for n in NOISE), err[-3000:]


def start(args: list[str], cwd: Path = REPO, **env) -> subprocess.Popen:
    """`rlvr args` in a session of its own (a terminal's job: Ctrl-C reaches its whole process group)."""
    return subprocess.Popen([sys.executable, "-m", "rlvr_utils.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=default_sigint,
                            env={**os.environ, **env})


def checkpointed(folder: Path):
    return lambda: bool(list(folder.glob("**/checkpoints/latest/state.pt")))


def signal_after(proc: subprocess.Popen, ready, sig: int, group: bool) -> tuple[str, str]:
    """Send `sig` once `ready()` (a checkpoint written: the run is mid-way, with many steps left), to the process
    group (Ctrl-C in a terminal) or to the process (`kill`); its output once it has ended."""
    while not ready():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    (os.killpg if group else os.kill)(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    assert not alive(proc.pid), f"processes of the command still running: {alive(proc.pid)}"
    return out, err


def alive(session: int) -> list[str]:
    """The processes of a session that still run (an exited child its parent never reaped is not running)."""
    pids = subprocess.run(["pgrep", "-s", str(session)], capture_output=True, text=True).stdout.split()
    out = []
    for p in pids:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] != "Z":
            out.append(p)
    return out


# -- item 4: interrupts

class _SignalFromAThread:
    """Pickled inside torch.save: a signal arrives while the writer runs, through a thread other than the main
    one (the kernel's choice when the main thread blocks it), and Python gets bytecode to run the handler."""

    def __init__(self, sig: int):
        self.sig = sig

    def __reduce__(self):
        t = threading.Thread(target=os.kill, args=(os.getpid(), self.sig))
        t.start()
        t.join()
        time.sleep(0.3)
        return int, (0,)


@pytest.mark.parametrize("handler", ["ours", "a kernel's"])  # `rlvr train`'s, or a notebook kernel's Ctrl-C
def test_a_signal_inside_a_checkpoint_write_is_raised_once_the_checkpoint_is_in_place(tmp_path, handler):
    run = RunDir(tmp_path / "r")
    sig = signal.SIGTERM if handler == "ours" else signal.SIGINT
    old = interrupts.install() if handler == "ours" else {sig: signal.signal(sig, signal.default_int_handler)}
    try:
        with pytest.raises(KeyboardInterrupt) as e:
            run.save_checkpoint({"step": 3, "x": _SignalFromAThread(sig)})
    finally:
        interrupts.restore(old)
    assert handler != "ours" or e.value.signum == signal.SIGTERM
    assert run.load_checkpoint() == {"step": 3, "x": 0}


def test_sigterm_stops_a_run_in_one_line_recorded_as_interrupted(tmp_path, fam_tiny_path):
    run = RunDir(tmp_path / "r")
    proc = start(["train", "--run-dir", str(run.path), *sets(*TINY_RUN, "steps=400", "checkpoint_every=1",
                                                             f"model={fam_tiny_path}")])
    _, err = signal_after(proc, checkpointed(run.path), signal.SIGTERM, group=False)
    assert proc.returncode == 143, err[-3000:]
    clean(err, f"rlvr: interrupted (SIGTERM); it continues from its last checkpoint with `rlvr train --run-dir {run.path}")
    assert run.status()["state"] == "interrupted" and run.status()["attempts"][-1]["state"] == "interrupted"


def test_a_grid_stopped_by_sigterm_then_ctrl_c_records_its_cell_interrupted_and_resumes_it(tmp_path, fam_tiny_path):
    grid = sets(f"models={fam_tiny_path}", "objectives=psr", *TINY_GRID, "steps=400")
    args = ["grid", "--profile", "cpu", "--runs", str(tmp_path), *grid]
    cell = RunDir(tmp_path / f"{Path(fam_tiny_path).name}__psr__s0")
    proc = start(args)
    _, err = signal_after(proc, checkpointed(tmp_path), signal.SIGTERM, group=False)  # `kill PID`
    assert proc.returncode == 143, err[-3000:]
    clean(err, "rlvr: interrupted (SIGTERM); run the same `rlvr grid` again")
    assert cell.status()["state"] == "interrupted"
    assert not list(cell.path.glob("*.ipynb")) and not list(cell.path.glob(".*.ipynb"))
    steps = len(cell.read_metrics())
    code, out, _ = run_dry(args)
    assert code == 0 and f"interrupted {cell.path.name}" in out
    proc = start(args)  # resumes the cell from its checkpoint: Ctrl-C once it has gone on by two steps
    out, err = signal_after(proc, lambda: len(cell.read_metrics(torn="skip")) >= steps + 2, signal.SIGINT, group=True)
    assert proc.returncode == 130 and "resuming" in out, err[-3000:]
    clean(err, "rlvr: interrupted (SIGINT); run the same `rlvr grid` again")
    assert cell.status()["state"] == "interrupted" and [a["state"] for a in cell.status()["attempts"]] == \
        ["interrupted", "interrupted"]
    assert [m["step"] for m in cell.read_metrics()][:steps + 1] == list(range(1, steps + 2))  # went on, no restart


def run_dry(args: list[str]) -> tuple[int, str, str]:
    p = subprocess.run([sys.executable, "-m", "rlvr_utils.cli", *args, "--dry-run"], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    return p.returncode, p.stdout, p.stderr


def test_an_interrupted_family_build_names_no_flag_it_lacks(tmp_path):
    proc = start(["family", *sets(*(f"{k}={v}" for k, v in FAMILY_TINY.items()), "tokens=400000")],
                 RLVR_FAMILY_CACHE=str(tmp_path))
    assert "tokenizer:" in proc.stdout.readline()  # pretraining has begun
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "--resume" not in err
    clean(err, "rlvr: interrupted (SIGINT); run the same command again")
    assert not list(tmp_path.glob("*/t400000"))  # no half rung


# -- item 5: two grids on one folder

def test_a_grid_meeting_a_cell_another_process_holds_stops_touching_nothing(tmp_path, fam_tiny_path, tiny_run):
    """The race the pre-check cannot see (two grids started together): the cell is claimed before anything of it
    is touched; the loser's executor stops at it, and its next cell is not started."""
    from rlvr_utils.grid.executors import EXECUTORS, Resources
    from rlvr_utils.grid.profiles import cells

    todo = cells("cpu", dict(x.split("=", 1) for x in merge(f"models={fam_tiny_path}", "objectives=psr,nsr",
                                                           *TINY_GRID)))
    held = shutil.copytree(tiny_run, tmp_path / todo[0].name)  # a done cell, its grid still running
    RunDir(held).set_status("running")
    before = tree_hashes(held)
    holder = _hold(held)
    try:
        results = EXECUTORS.pick("local")(todo, tmp_path, Resources(), lambda _: None)
    finally:
        holder.kill()
    assert [(r.name, r.busy) for r in results] == [(todo[0].name, True)] and f"pid {holder.pid}" in results[0].error
    assert tree_hashes(held) == before and sorted(p.name for p in tmp_path.iterdir()) == [todo[0].name]


# -- item 6: a full disk during a write

@pytest.fixture(scope="module")
def cut(tmp_path_factory, fam_tiny_path) -> Path:
    """A run of the tiny model stopped after step 2 of 4 (its checkpoint after step 2)."""
    from rlvr_utils.core.config import TrainConfig, parse_sets
    from rlvr_utils.train.loop import train

    cfg = TrainConfig.from_dict(parse_sets(merge(*TINY_RUN, "steps=4", "checkpoint_every=1", f"model={fam_tiny_path}")))
    return train(cfg, tmp_path_factory.mktemp("cut") / "run", stop_after=2, log=lambda _: None).path


def _file_limit(size: int):
    def limit() -> None:  # a file may not grow past `size`: its write fails with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return limit


def test_a_failed_checkpoint_write_is_one_line_and_keeps_the_old_one(tmp_path, cut):
    run = RunDir(shutil.copytree(cut, tmp_path / "run"))
    old = (run.checkpoints / "latest" / "state.pt").read_bytes()
    p = subprocess.run([sys.executable, "-m", "rlvr_utils.cli", "train", "--run-dir", str(run.path), "--resume"],
                       capture_output=True, text=True, timeout=300, preexec_fn=_file_limit(1 << 20))
    assert p.returncode == 2, p.stderr[-3000:]
    one_error_line(p.stderr, "while writing the checkpoint")
    assert "state.pt" in p.stderr and "the previous one is kept" in p.stderr
    assert (run.checkpoints / "latest" / "state.pt").read_bytes() == old
    assert not (run.checkpoints / ".latest.partial").exists()
    assert run.status()["state"] == "failed" and "checkpoint" in run.status()["error"]


def test_a_failed_journal_append_is_one_line_naming_the_journal(tmp_path, cut, monkeypatch, capsys):
    run = RunDir(shutil.copytree(cut, tmp_path / "run"))
    real = os.fsync

    def fsync(fd: int) -> None:  # the OS's answer for this one file: no space left (the code under test is unchanged)
        if os.readlink(f"/proc/self/fd/{fd}").endswith("metrics.jsonl"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code, err = run_main(["train", "--run-dir", str(run.path), "--resume"], capsys)
    assert code == 2
    one_error_line(err, f"No space left on device while writing {run.metrics}; a resume redoes that step")
    assert run.status()["state"] == "failed" and "metrics.jsonl" in run.status()["error"]


# -- item 7: the messages around them

def test_a_dangling_symlink_as_run_folder_is_named(tmp_path, capsys):
    link = tmp_path / "r"
    link.symlink_to(tmp_path / "gone")
    code, err = run_main(["train", "--run-dir", str(link), *sets(*TINY_RUN)], capsys)
    assert code == 2
    one_error_line(err, "symbolic link")
    assert "gone" in err and link.is_symlink() and not (tmp_path / "gone").exists()


def test_a_damaged_done_cell_gets_advice_that_works(tiny_run, tmp_path, capsys):
    grid = tmp_path / "grid"
    run = shutil.copytree(tiny_run, grid / "run")
    f = run / "metrics.jsonl"
    f.write_bytes(f.read_bytes()[:-20])  # its last row torn after it finished
    code, out = run_main(["report", str(grid), "--summary"], capsys)
    assert code == 0 and "metrics.jsonl line 2 torn" in out and "delete its folder and run the grid again" in out
    assert "--resume` repairs" not in out  # what a resume refuses for a finished run (below) is not advised
    code, err = run_main(["train", "--run-dir", str(run), "--resume"], capsys)
    assert code == 2 and "delete" in err


def test_a_partial_grids_summary_names_the_cells_it_leaves_out(tmp_path, capsys):
    from synthetic import _grid

    _grid(tmp_path, {}, 0.01)
    for name, state in (("n0__psr__s3", "interrupted"), ("n1000__nsr__s1", "running")):
        RunDir(tmp_path / "grid" / name).set_status(state)
    code, out = run_main(["report", str(tmp_path / "grid"), "--summary", "--k", "4"], capsys)
    note = next(x for x in out.splitlines() if x.startswith("**Left out, not finished:"))
    assert code == 0 and "n0__psr__s3 (interrupted)" in note and "n1000__nsr__s1 (running)" in note, out[:2000]


def test_an_empty_grids_summary_exits_2_like_the_html_report(tmp_path, capsys):
    for line in (["report", str(tmp_path)], ["report", str(tmp_path), "--summary"]):
        code, err = run_main(line, capsys)
        assert code == 2
        one_error_line(err, "no runs yet")


def test_a_second_build_of_a_rung_says_whom_it_waits_for(fam_tiny_path):
    root = Path(fam_tiny_path).parents[1]
    lock = Path(fam_tiny_path).parent / ".lock"
    code = ("import fcntl, time; f = open(%r, 'w'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); "
            "time.sleep(120)" % str(lock))
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    proc = start(["family", *sets(*(f"{k}={v}" for k, v in FAMILY_TINY.items()))], RLVR_FAMILY_CACHE=str(root))
    try:
        line = proc.stdout.readline()
        assert line.startswith("waiting for rung") and f"held by pid {holder.pid}" in line, line
    finally:
        holder.kill()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.strip().endswith(fam_tiny_path), err[-2000:]


def test_run_states_are_one_registry():
    from rlvr_utils.core.runs import RESUMABLE, RUN_STATES

    assert set(RESUMABLE) < set(RUN_STATES) and "interrupted" in RESUMABLE
    with pytest.raises(ValueError, match="unknown run state 'stopped'"):
        RunDir("/nonexistent").set_status("stopped")
