"""Provenance: status.json keeps every attempt of a run; config.json's _meta says whether the source was dirty."""

import subprocess

from rlvr_utils.core.provenance import source_state
from rlvr_utils.core.runs import RunDir


def test_every_attempt_stays_on_record(tmp_path):
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    run.set_status("running", pid=11, command="rlvr train")
    run.set_status("failed", error="RuntimeError: out of memory")
    run.set_status("running", pid=12, command="rlvr train --resume")
    run.set_status("done", seconds=3.5)
    st = run.status()
    assert st["state"] == "done" and len(st["attempts"]) == 2
    first, second = st["attempts"]
    assert first["pid"] == 11 and first["state"] == "failed" and "out of memory" in first["error"] and first["end"]
    assert second["pid"] == 12 and second["state"] == "done" and second["seconds"] == 3.5 and second["start"]


def test_a_failure_before_the_start_is_an_attempt_too(tmp_path):
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    run.set_status("failed", error="OSError: no such model")  # a grid cell whose set-up failed
    (a,) = run.status()["attempts"]
    assert a["start"] is None and a["state"] == "failed" and a["error"].startswith("OSError")
    run.status_file.write_text("{torn")
    run.set_status("running", pid=1)  # a damaged status keeps no history, and is not an error
    assert len(run.status()["attempts"]) == 1


def test_source_state_says_whether_the_tree_was_dirty(tmp_path):
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.email=a@b", "-c", "user.name=t", "commit", "-qm", "c")
    assert source_state(pkg) == {"git_dirty": False, "git_dirty_files": []}
    (pkg / "m.py").write_text("x = 2\n")
    (tmp_path / "outside.txt").write_text("runs and notes outside the package do not count")
    st = source_state(pkg)
    assert st["git_dirty"] is True and st["git_dirty_files"] == ["pkg/m.py"]


def test_a_run_s_provenance_carries_the_source_state():
    from rlvr_utils.core.provenance import provenance

    p = provenance()
    assert "git_dirty" in p and p["git_dirty"] in (True, False, None)  # config.json's _meta is this dict
