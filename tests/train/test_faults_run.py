"""The run folder's fault matrix and real crashes.

Each damage row breaks one kind of file in a copy of a real run, then asks the kit to read it: the answer
is one `rlvr: error:` line naming the file (and line) and a remedy, exit 2, and every file in the folder
byte-for-byte as it was. A torn journal tail is repaired by a resume instead. The crash test kills a real
`rlvr train` with SIGKILL at several moments (during sampling, the update, a checkpoint write, a metrics
append) and requires the resumed run to equal one that was never killed, step for step.
"""

import errno
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import TINY_RUN, merge, rlvr, sets

from rlvr_utils import cli
from rlvr_utils.core.config import TrainConfig, parse_sets
from rlvr_utils.core.files import CRASH_ENV, torn_tail
from rlvr_utils.core.runs import RunDir

pytestmark = pytest.mark.slow  # trains the tiny model in subprocesses

TIMING = ("time_", "seconds")


def tree_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def main(argv: list[str], capsys) -> tuple[int, str]:
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.err + out.out


def one_error_line(err: str, *words: str) -> None:
    lines = [x for x in err.strip().splitlines() if x.startswith("rlvr: error:")]
    assert len(lines) == 1 and all(w in lines[0] for w in words) and "Traceback" not in err, err


@pytest.fixture(scope="module")
def cut_run(tmp_path_factory, fam_tiny_path) -> Path:
    """A run of the tiny model stopped after step 2 of 4, with evaluations at steps 0-2 and a checkpoint."""
    from rlvr_utils.train.loop import train

    cfg = TrainConfig.from_dict(parse_sets(merge(*TINY_RUN, "steps=4", "eval_every=1", "checkpoint_every=1",
                                                 f"model={fam_tiny_path}")))
    return train(cfg, tmp_path_factory.mktemp("cut") / "run", stop_after=2, log=lambda _: None).path


def _half(f: Path) -> None:
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _bad_line(line: int):
    def damage(f: Path) -> None:
        rows = f.read_text().splitlines(keepends=True)
        rows[line - 1] = '{"step": 1, "loss": ' + "\n"
        f.write_text("".join(rows))
    return damage


def _drop_step(step: int):
    def damage(f: Path) -> None:  # a whole record gone (not torn): what cutting a damaged row would leave
        f.write_text("".join(x for x in f.read_text().splitlines(keepends=True) if json.loads(x)["step"] != step))
    return damage


# row -> (the file, how it is damaged, the words its message must carry). The cut run's checkpoint is after step 2:
# a record at or before it that is gone (not torn) cannot be redone by a resume
DAMAGE = {
    "config.json": ("config.json", _half, ("config.json:", "delete")),
    "status.json": ("status.json", _half, ("status.json:", "delete it")),
    "metrics.jsonl": ("metrics.jsonl", _bad_line(1), ("metrics.jsonl:1", "not valid JSON")),
    "eval.jsonl": ("eval.jsonl", _bad_line(1), ("eval.jsonl:1", "not valid JSON")),
    "checkpoints/latest/state.pt": ("checkpoints/latest/state.pt", _half, ("state.pt", "damaged checkpoint")),
    "a lost metrics row": ("metrics.jsonl", _drop_step(1), ("metrics.jsonl lacks step 1", "checkpoint is after step 2")),
    "a lost eval row": ("eval.jsonl", _drop_step(1), ("eval.jsonl lacks step 1", "checkpoint is after step 2")),
}


@pytest.mark.parametrize("row", sorted(DAMAGE))
def test_a_damaged_file_is_named_and_nothing_is_written(row, cut_run, tmp_path, capsys):
    run = shutil.copytree(cut_run, tmp_path / "run")
    name, damage, words = DAMAGE[row]
    damage(run / name)
    before = tree_hashes(run)
    code, err = main(["train", "--run-dir", str(run), "--resume"], capsys)
    assert code == 2
    one_error_line(err, *words)
    assert tree_hashes(run) == before


def test_a_finished_run_damaged_later_is_not_called_done(tiny_run, tmp_path, capsys):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    f = run / "metrics.jsonl"
    f.write_bytes(f.read_bytes()[:-20])  # its last row torn after it finished
    before = tree_hashes(run)
    code, err = main(["train", "--run-dir", str(run), "--resume"], capsys)
    assert code == 2 and "already done" not in err
    one_error_line(err, "marked done", "metrics.jsonl line 2 torn", "delete")
    assert tree_hashes(run) == before


def test_a_damaged_sample_file_is_named_by_the_migration(tiny_run, tmp_path, capsys):
    # a run saved before eval rows carried per-problem counts (runs/prior) is migrated from its sample files once
    # (`python -m rlvr_utils.study.migrate`): a damaged one is named, and nothing is written
    from rlvr_utils.study.migrate import main as migrate

    grid = tmp_path / "grid"
    run = shutil.copytree(tiny_run, grid / "run")
    rows = [json.loads(x) for x in (run / "eval.jsonl").read_text().splitlines()]
    (run / "eval.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "per_problem"}) + "\n"
                                            for r in rows))
    _bad_line(2)(run / "samples" / "eval_00000.jsonl")
    before = tree_hashes(run)
    code = migrate([str(grid)])
    err = capsys.readouterr().err
    assert code == 2
    one_error_line(err, "eval_00000.jsonl:2", "delete")
    assert tree_hashes(run) == before


def test_a_damaged_prior_is_named(tmp_path, capsys, monkeypatch):
    rung = tmp_path / "cache" / "warmstarts" / "smollm2-135m-n0-s0-abcd1234"
    rung.mkdir(parents=True)
    (rung / "warmstart.json").write_text(json.dumps({"n": 0, "base_path": "x", "data": "gen:chain", "epochs": 2}))
    (rung / "prior.json").write_text('{"held_out_sft_loss": 1.2, "greedy": {"mean"')
    monkeypatch.setenv("RLVR_CACHE", str(tmp_path / "cache"))
    code, err = main(["warmstart", "--table"], capsys)
    assert code == 2
    one_error_line(err, "prior.json:1", "rebuild")


def _read_only(folder: Path):
    """Make a folder and its files unwritable, even for root (chattr +i); None where the filesystem can't."""
    p = subprocess.run(["chattr", "-R", "+i", str(folder)], capture_output=True)
    return p.returncode == 0


def test_a_read_only_run_folder_is_one_line_and_untouched(cut_run, tmp_path, capsys):
    run = shutil.copytree(cut_run, tmp_path / "run")
    before = tree_hashes(run)
    if not _read_only(run):
        pytest.skip("chattr +i is not supported here")
    try:
        code, err = main(["train", "--run-dir", str(run), "--resume"], capsys)
    finally:
        subprocess.run(["chattr", "-R", "-i", str(run)])
    assert code == 2
    one_error_line(err, str(run), "cannot write")
    assert tree_hashes(run) == before


def test_a_full_disk_on_checkpoint_write_keeps_the_previous_checkpoint(cut_run, tmp_path, monkeypatch, capsys):
    import torch

    run = RunDir(shutil.copytree(cut_run, tmp_path / "run"))
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        real_save({"partial": True}, f)  # some bytes made it before the disk filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("rlvr_utils.core.runs.torch.save", full_disk)
    code, err = main(["train", "--run-dir", str(run.path), "--resume"], capsys)
    assert code == 2
    one_error_line(err, "No space left on device", "checkpoint", "previous one is kept")
    state = run.load_checkpoint()
    assert state["step"] == 2 and "policy" in state  # the checkpoint after step 2 survived, whole
    assert not (run.checkpoints / ".latest.partial").exists()
    assert run.status()["state"] == "failed" and "No space left" in run.status()["error"]


def test_a_torn_metrics_tail_is_reported_then_repaired_by_resume(cut_run, tmp_path, capsys):
    grid = tmp_path / "grid"
    run = RunDir(shutil.copytree(cut_run, grid / "run"))
    with run.metrics.open("a") as f:  # what a crash during the append of step 3's row leaves
        f.write('{"step": 3, "reward_mean": 0.2')
    code, err = main(["report", str(grid), "--summary"], capsys)  # nothing finished: one line, and what repairs it
    assert code == 2
    one_error_line(err, "not read whole: run (metrics.jsonl line 3 torn)", "--resume` repairs a torn line")
    code, out = main(["train", "--run-dir", str(run.path), "--resume"], capsys)
    assert code == 0 and "repaired metrics.jsonl: cut torn line 3" in out
    assert torn_tail(run.metrics) is None and [m["step"] for m in run.read_metrics()] == [1, 2, 3, 4]


def record(run: RunDir) -> dict:
    """What a run computed: metrics, evaluations and every sample, without timings."""
    untimed = lambda rows: [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in rows]  # noqa: E731
    samples = {f.name: f.read_text() for f in sorted(run.samples.iterdir())}
    return {"metrics": untimed(run.read_metrics()), "evals": untimed(run.read_evals()), "samples": samples}


# (where the process is killed, at which step): sampling, the update, the checkpoint's write and its swap,
# and half-way through the append of a step's metrics row
CRASHES = [("sampling", 1), ("update", 2), ("checkpoint", 2), ("metrics", 3), ("checkpoint-rename", 4), ("update", 5)]


def test_sigkill_at_any_moment_resumes_to_the_same_run(tmp_path, fam_tiny_path):
    common = sets(*TINY_RUN, "steps=5", "eval_every=2", "checkpoint_every=1", "lr=1e-4",
                  "objective=w_reinforce", f"model={fam_tiny_path}")
    # in folders of their own: siblings would share their step-0 evaluation (builds.shared_base_eval); the run that
    # is never killed runs here, in this process (the same code and threads as a `rlvr train`)
    from rlvr_utils.train.loop import train

    whole = merge(*TINY_RUN, "steps=5", "eval_every=2", "checkpoint_every=1", "lr=1e-4", "objective=w_reinforce",
                  f"model={fam_tiny_path}")
    train(TrainConfig.from_dict(parse_sets(whole)), tmp_path / "a" / "whole", log=lambda _: None)
    cut = RunDir(tmp_path / "b" / "cut")
    for point, step in CRASHES:
        p = rlvr("train", "--run-dir", str(cut.path), *([] if cut.config.exists() else common),
                 *(["--resume"] if cut.config.exists() else []), check=False, env={CRASH_ENV: f"{point}:{step}"})
        assert p.returncode == -9, (point, step, p.returncode, p.stderr[-2000:])  # killed by SIGKILL
        assert cut.status()["state"] == "running"
        if point == "metrics":
            assert torn_tail(cut.metrics) == step  # half of step 3's row, as a crash mid-append leaves it
    assert cli.main(["train", "--run-dir", str(cut.path), *common]) == 2  # never silently overwrites a run
    done = rlvr("train", "--run-dir", str(cut.path), "--resume")
    assert "resumed from checkpoint after step 4" in done.stdout
    assert cut.status()["state"] == "done"
    assert record(cut) == record(RunDir(tmp_path / "a" / "whole"))
