"""The CLI's fault matrix: each row is one bad input, the exit status it must end in, a word its one-line message
must name (the key, file or address at fault), and no traceback; rows that touch a run leave its files as
they were. Most rows call `rlvr_utils.cli.main` in this process (it is what `rlvr` runs); the rows about
other processes run `rlvr` itself."""

import hashlib
import os
import subprocess
import sys
import time
import typing
from dataclasses import fields
from pathlib import Path

import pytest
from conftest import default_sigint, rlvr, sets

from rlvr_utils import cli
from rlvr_utils.core.config import TrainConfig
from rlvr_utils.core.files import CRASH_ENV

HINTS = typing.get_type_hints(TrainConfig)
WRONG_TYPE = {int: ("abc", "is not a valid int"), float: ("abc", "is not a valid float"),
              bool: ("maybe", "is not a valid bool"), dict: ("[1]", "expects a JSON object")}
# a value just outside each bound a field declares (its `setting`), and the phrase its error line carries
OUTSIDE = {">= 1": "0", ">= 0": "-1", "> 0": "0", "in [0, 1)": "1", "in (0, 1)": "1.5", "in (0, 1]": "0"}
# one value out of range (or not among its registry's choices) per field that has a range: (value, phrase)
OUT_OF_RANGE = {
    **{f.name: (OUTSIDE[f.metadata["bound"]], "must be " + f.metadata["bound"]) for f in fields(TrainConfig)
       if f.metadata["bound"]},
    **{f.name: ("nope", "not in " + ", ".join(f.metadata["choices"])) for f in fields(TrainConfig)
       if f.metadata["choices"] is not None},
    "model": ("/no/such/dir", "no such file or directory"), "data": ("/no/such/data", "no such file or directory"),
    "objective_args": ('{"nope": 1}', "not a knob"),
    "optimizer": ("nope", "not in"), "momentum": ("1", "must be in [0, 1)"), "dynamic_kept": ("-1", "must be >= 0"),
    "dynamic_max_batches": ("0", "must be >= 1"), "base_from": ("/no/such/grid", "no such folder"),
    "eval_protocols": ('{"p": {"samples": 0}}', "must be an integer >= 1"),
}
FREE = {"levels"}  # any string is a valid filter


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    """`rlvr argv` in this process: (exit status, stderr and stdout)."""
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out = capsys.readouterr()
    return code, out.err + out.out


def one_error_line(err: str, word: str) -> None:
    lines = [x for x in err.strip().splitlines() if x.startswith("rlvr: error:")]
    assert len(lines) == 1 and word in lines[0] and "Traceback" not in err, err


def test_every_field_with_a_range_has_a_row():
    assert {f.name for f in fields(TrainConfig) if HINTS[f.name] is not bool} - FREE == set(OUT_OF_RANGE)


@pytest.mark.parametrize("key", sorted(k for k in HINTS if HINTS[k] in WRONG_TYPE))
def test_a_wrong_type_is_one_line_naming_the_key(key, tmp_path, capsys):
    value, phrase = WRONG_TYPE[HINTS[key]]
    code, err = run_main(["train", "--run-dir", str(tmp_path / "r"), "--set", f"{key}={value}"], capsys)
    assert code == 2 and phrase in err
    one_error_line(err, key)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("key", sorted(OUT_OF_RANGE))
def test_a_value_out_of_range_is_one_line_naming_the_key(key, tmp_path, capsys):
    value, phrase = OUT_OF_RANGE[key]
    code, err = run_main(["train", "--run-dir", str(tmp_path / "r"), "--set", f"{key}={value}"], capsys)
    assert code == 2 and phrase in err, err
    one_error_line(err, key if key not in ("model", "data") else value)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv,word", [
    (["train", "--set", "nope=1"], "unknown config key 'nope'"),
    (["train", "--set", "lr=1e-5", "--set", "lr=1e-4"], "--set lr given twice"),
    (["train", "--set", "prompts_per_step=3", "--set", "mini_batches=4"], "not divisible by mini_batches=4"),
    (["train", "--set", "steps"], "key=value"),
    (["train", "--set", "model=nosuchmodel"], "unknown model 'nosuchmodel'; known: smollm2-135m"),
    (["train", "--set", "model=./no/such/dir"], "'./no/such/dir': no such file or directory"),
    (["train", "--set", "model=~/no-such-model.gguf"], "no such GGUF file"),
    (["train", "--set", "model=warm:n=abc"], "n='abc' is not a valid int"),
    (["train", "--set", "model=warm:base=/no/such/base"], "'/no/such/base': no such file or directory"),
    (["train", "--set", "data=gen:nosuch"], "unknown task family"),
    (["train", "--set", "device=cuda"], "sees no usable CUDA device"),  # this suite runs on CPUs: never falls back
    (["grid", "--profile", "nosuch", "--runs", "RUNS"], "unknown profile 'nosuch'"),
    (["grid", "--profile", "cpu", "--runs", "RUNS", "--set", "nope=1"], "nope"),
    (["grid", "--profile", "cpu", "--runs", "RUNS", "--set", "lr=1", "--set", "lr=2"], "--set lr given twice"),
    (["grid", "--profile", "cpu", "--runs", "RUNS", "--set", "models=/no/such/model"], "/no/such/model"),
    (["train", "--resume"], "no run to resume (no config.json)"),  # a mistyped folder: not hours of a default run
    (["grid", "--profile", "cpu", "--runs", "RUNS", "--set", "lam=0.5"], "say lams=0.5"),  # the axis would win
    (["grid", "--profile", "cpu", "--runs", "RUNS", "--set", "objective=nsr"], "say objectives=nsr"),
    (["grid", "--profile", "cpu", "--runs", "RUNS", "--set", "seed=3"], "say seeds=3"),
    (["grid", "--profile", "cpu", "--runs", "RUNS", "--progress-every", "0"], "--progress-every must be > 0"),
    (["grid", "--profile", "cpu", "--runs", "RUNS", "--retries", "-1"], "--retries must be >= 0"),
    (["grade", "--jsonl", "/dev/null", "--out", "RUNS/g.jsonl", "--workers", "0"], "--workers must be >= 1"),
    (["grade", "--jsonl", "/dev/null", "--out", "RUNS/g.jsonl", "--timeout", "0"], "--timeout must be > 0"),
    (["report", "RUNS/none", "--summary"], "no such runs directory"),
    (["report", "RUNS/none"], "no such runs directory"),
    # a rung's recipe is checked where its spec is read: before its base is looked for, let alone trained
    (["warmstart", "--set", "base=/no/such/base", "--set", "engine=vlm"], "engine='vlm' not in auto, vllm, hf"),
    (["warmstart", "--set", "base=/no/such/base", "--set", "batch_size=0"], "batch_size must be >= 1"),
    (["grid", "--profile", "prior", "--runs", "RUNS", "--set", "models=warm:base=/no/such/base,n=1000,engine=vlm"],
     "engine='vlm'"),
    (["data", "check", "/no/such/data"], "no such file or directory"),
])
def test_bad_input_is_one_line_before_anything_runs(argv, word, tmp_path, capsys):
    argv = [a.replace("RUNS", str(tmp_path / "runs")) for a in argv]
    if argv[0] == "train":
        argv[1:1] = ["--run-dir", str(tmp_path / "r")]
    code, err = run_main(argv, capsys)
    assert code == 2
    one_error_line(err, word)
    assert not (tmp_path / "r").exists() and not any((tmp_path / "runs").glob("*/status.json"))


def test_a_report_of_a_grid_with_no_finished_cell_is_one_line(tmp_path, capsys):
    """Before any notebook runs (04_analyze has nothing to tabulate: it once failed with a multi-screen KeyError)."""
    import json

    from synthetic import _ev

    from rlvr_utils.core.files import append_jsonl
    from rlvr_utils.core.runs import RunDir

    grid = tmp_path / "grid"
    grid.mkdir()
    for line in (["report", str(grid)], ["report", str(grid), "--summary"]):  # an empty folder
        code, err = run_main(line, capsys)
        assert code == 2
        one_error_line(err, "no runs yet")
    for name, state in (("a", "running"), ("b", "failed")):
        run = RunDir(grid / name)
        run.path.mkdir()
        run.config.write_text(json.dumps({"model": "m", "objective": "psr", "seed": 0}))
        append_jsonl(run.evals, [_ev(0, 0.3)])  # its base measured, nothing after it yet
        run.set_status(state)
    code, err = run_main(["report", str(grid)], capsys)
    assert code == 2
    one_error_line(err, f"{grid}: no finished cells yet (1 under way, 1 failed)")
    assert sorted(p.name for p in grid.iterdir()) == ["a", "b"]  # no report, no partial notebook
    code, err = run_main(["report", str(grid), "--summary"], capsys)
    assert code == 2  # the same rule, the same line
    one_error_line(err, f"{grid}: no finished cells yet (1 under way, 1 failed)")


def tree_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_rows_on_a_finished_run(tiny_run, tmp_path, capsys):
    import shutil

    run = shutil.copytree(tiny_run, tmp_path / "run")
    before = tree_hashes(run)
    code, err = run_main(["train", "--run-dir", str(run), "--resume", "--set", "lr=1"], capsys)
    assert code == 2
    one_error_line(err, "--set is not allowed")
    code, err = run_main(["train", "--run-dir", str(run), "--set", "steps=2"], capsys)
    assert code == 2
    one_error_line(err, "already holds a run")
    code, err = run_main(["train", "--run-dir", str(run), "--resume"], capsys)
    assert code == 0 and "already done: 2 steps, nothing to run" in err
    assert tree_hashes(run) == before


def _hold(folder: Path) -> subprocess.Popen:
    """Another live process holding a run folder's lock, as a running trainer does."""
    code = ("import sys, time; from pathlib import Path; from rlvr_utils.core.files import try_lock; "
            f"try_lock(Path({str(folder)!r})); print('held', flush=True); time.sleep(120)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_folder_held_by_a_live_process_is_refused_naming_its_pid(tiny_run, tmp_path):
    import shutil

    from rlvr_utils.core.runs import RunDir

    run = shutil.copytree(tiny_run, tmp_path / "grid" / "cell")
    RunDir(run).set_status("running")  # in flight: its trainer is the live process below
    holder = _hold(run)
    try:
        before = tree_hashes(run)
        p = rlvr("train", "--run-dir", str(run), "--resume", check=False, timeout=60)
        assert p.returncode == 75 and "Traceback" not in p.stderr  # EX_TEMPFAIL: it succeeds once the other ends
        one_error_line(p.stderr, f"pid {holder.pid}")
        assert tree_hashes(run) == before
    finally:
        holder.kill()


@pytest.mark.parametrize("held", ["psr", "nsr"])  # the grid's first cell, or a later one: checked before any runs
def test_a_grid_whose_cell_is_held_is_refused_before_it_runs(tmp_path, fam_tiny_path, capsys, held):
    from conftest import TINY_GRID

    runs = tmp_path / "runs"
    cell = runs / f"{Path(fam_tiny_path).name}__{held}__s0"
    holder = _hold(cell)
    try:
        code, err = run_main(["grid", "--profile", "cpu", "--runs", str(runs),
                              *sets(f"models={fam_tiny_path}", "objectives=psr,nsr", *TINY_GRID)], capsys)
        assert code == 75
        one_error_line(err, f"pid {holder.pid}")
        assert cell.name in err and sorted(x.name for x in runs.iterdir()) == [cell.name]
        assert sorted(x.name for x in cell.iterdir()) == [".lock"]  # nothing written into the held cell
    finally:
        holder.kill()


def test_an_unreachable_ray_cluster_fails_within_seconds_naming_the_address(tmp_path, capsys):
    t0 = time.perf_counter()
    code, err = run_main(["grid", "--profile", "cpu", "--runs", str(tmp_path / "runs"), "--executor", "ray", "--address",
                          "127.0.0.1:1", *sets("models=smollm2-135m", "seeds=0")], capsys)
    assert code == 2 and time.perf_counter() - t0 < 30, err[-2000:]
    one_error_line(err, "127.0.0.1:1")
    assert "ray start --head" in err


def test_ctrl_c_is_one_line_and_the_run_resumes(tmp_path, fam_tiny_path):
    """SIGINT (what Ctrl-C sends) during a step: exit 130 with one line, no traceback; --resume finishes it."""

    from conftest import TINY_RUN
    from rlvr_utils.core.runs import RunDir

    # the signal is sent by the run itself in the middle of step 3 (after its sampling): a real SIGINT at a known
    # moment, where a timed kill from outside could land after a tiny run had already finished
    args = [sys.executable, "-m", "rlvr_utils.cli", "train", "--run-dir", str(tmp_path / "r"),
            *sets(*TINY_RUN, "steps=6", "checkpoint_every=1", f"model={fam_tiny_path}")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, CRASH_ENV: "sampling:3:INT"}, preexec_fn=default_sigint)
    run = RunDir(tmp_path / "r")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("rlvr: interrupted (SIGINT)")
    assert run.status()["state"] == "interrupted" and "SIGINT" in run.status()["error"]
    p = rlvr("train", "--run-dir", str(run.path), "--resume", "--set", "steps=6", check=False)
    assert p.returncode == 2  # --resume continues the saved config only
    done = rlvr("train", "--run-dir", str(run.path), "--resume", timeout=600)
    assert done.returncode == 0 and run.status()["state"] == "done"
    assert [m["step"] for m in run.read_metrics()] == list(range(1, 7))


def test_a_k_the_grid_never_evaluated_is_one_line(capsys):
    prior = Path(__file__).resolve().parents[1] / "runs" / "prior"  # committed: evaluated at k = 1, 2, 4, 8, 16
    code, err = run_main(["report", str(prior), "--summary", "--k", "3"], capsys)
    assert code == 2
    one_error_line(err, "--k 3")
    assert "16" in err
