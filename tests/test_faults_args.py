"""The fault matrix of settings and data files: objective knobs of the wrong type or out of range, every float
setting at inf, a context that cannot hold the prompt and answer, a run that never took a step, data files with bad
UTF-8 or an oversized line. Each row: the exit status, a word its one `rlvr: error:` line must name, no traceback,
and a run folder left as it was (or, for a run that never stepped, started again). The rows call `rlvr`'s main in
this process (`run_main`), as tests/test_faults_cli.py does; those that need a model use a committed family rung."""

import json
import typing
from pathlib import Path

import pytest
from conftest import REPO, TINY_RUN, merge, sets
from test_faults_cli import one_error_line, run_main, tree_hashes

from rlvr_utils.core.config import TrainConfig
from rlvr_utils.core.runs import RunDir

RUNG = REPO / "runs" / "family-rungs" / "1m-s0-09cd6630" / "t1000000"  # a 1M-parameter rung, context 512
GRPO = ["--set", "objective=grpo"]


@pytest.mark.parametrize("argv,word", [
    # item 2: a knob's value is checked against the objective's own annotation: type (a bool is only a JSON
    # bool: "false" is not taken for true), range, finiteness; a name that is no knob lists the knobs
    (GRPO + ["--set", 'objective_args={"grpo_scale_std": "false"}'], "grpo_scale_std must be a bool"),
    (GRPO + ["--set", 'objective_args={"grpo_scale_std": 0}'], "grpo_scale_std must be a bool"),
    (GRPO + ["--set", 'objective_args={"eps": "oops"}'], "eps must be a float"),
    (GRPO + ["--set", 'objective_args={"eps": -1}'], "eps must be > 0"),
    (GRPO + ["--set", 'objective_args={"eps": NaN}'], "eps must be a finite number"),
    (GRPO + ["--set", 'objective_args={"eps": Infinity}'], "eps must be a finite number"),
    (GRPO + ["--set", 'objective_args={"nope": 1}'], "its knobs: grpo_scale_std, eps"),
    (["--set", 'objective_args={"lam": true}'], "lam must be a float"),
    (["--set", 'objective_args={"lam": -0.5}'], "lam must be >= 0"),
    (["--set", "objective=nsr", "--set", 'objective_args={"lam": 1}'], "its knobs: none"),
    (["--set", "lam=-1"], "lam must be >= 0"),
    # a context the settings say cannot hold a prompt and its answer: the knob to change is named
    (["--set", "max_model_len=512"], "max_model_len=512"),
    (["--set", "max_model_len=600", "--set", "max_prompt_tokens=512", "--set", "max_tokens=96"], "lower max_prompt_tokens"),
])
def test_a_bad_setting_is_one_line_naming_it(argv, word, tmp_path, capsys):
    code, err = run_main(["train", "--run-dir", str(tmp_path / "r"), *argv], capsys)
    assert code == 2
    one_error_line(err, word)
    assert not (tmp_path / "r").exists()


FLOATS = sorted(k for k, h in typing.get_type_hints(TrainConfig).items() if h is float)


@pytest.mark.parametrize("key", FLOATS)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_inf_is_refused_wherever_nan_is(key, value, tmp_path, capsys):
    code, err = run_main(["train", "--run-dir", str(tmp_path / "r"), "--set", f"{key}={value}"], capsys)
    assert code == 2
    one_error_line(err, f"{key} must be a finite number")


@pytest.mark.parametrize("argv,word", [
    # item 3: the context comes from the model (a family rung's is 512), before any folder is claimed
    ([], "max_tokens=512 leaves no room for a prompt in the model's context of 512"),
    (["max_tokens=64", "max_prompt_tokens=512"], "lower max_prompt_tokens"),
    (["max_tokens=64", "max_model_len=2048"], "max_model_len=2048 exceeds the model's context of 512"),
    (["max_tokens=64", "eval_max_tokens=600"], "lower eval_max_tokens"),
])
@pytest.mark.parametrize("model", [str(RUNG), "family:size=1m,tokens=1000000"])
def test_a_context_that_cannot_fit_names_its_knob(argv, word, model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RLVR_FAMILY_CACHE", str(RUNG.parents[1]))  # found, never built
    run = tmp_path / "r"
    code, err = run_main(["train", "--run-dir", str(run), *sets(f"model={model}", "prompt=plain", *argv)], capsys)
    assert code == 2
    one_error_line(err, word)
    assert not run.exists()


def _failed_setup(run: Path, cfg: TrainConfig) -> None:
    """What a run whose set-up failed after its config was saved leaves (an engine that would not start)."""
    cfg.save(run / "config.json")
    RunDir(run).set_status("failed", error="ValueError: the engine would not start")


TINY = merge(*TINY_RUN, f"model={RUNG}")


def test_a_run_that_never_stepped_starts_again_with_new_settings(tmp_path, capsys):
    run = tmp_path / "r"
    _failed_setup(run, TrainConfig.from_dict({"model": str(RUNG), "prompt": "plain", "max_tokens": 64,
                                              "max_model_len": 2048}))
    code, out = run_main(["train", "--run-dir", str(run), *sets(*TINY)], capsys)
    assert code == 0 and "starting it again with these settings" in out, out
    assert TrainConfig.load(run / "config.json").max_model_len == 512
    assert [r["step"] for r in RunDir(run).read_metrics()] == [1, 2]
    assert [a["state"] for a in RunDir(run).status()["attempts"]][0] == "failed"  # the failed attempt stays on record


def test_a_run_with_a_record_is_refused_naming_the_way_out(tmp_path, capsys):
    run = tmp_path / "r"
    _failed_setup(run, TrainConfig.from_dict({"model": str(RUNG), "prompt": "plain", "max_tokens": 64}))
    RunDir(run).write_eval(0, {"pass@1": 0.0}, [], 1.0)
    before = tree_hashes(run)
    code, err = run_main(["train", "--run-dir", str(run), *sets(*TINY)], capsys)
    assert code == 2
    one_error_line(err, f"pass --resume (resume=True) to continue it with its saved settings, or delete {run}")
    assert tree_hashes(run) == before


GRADED = b'{"completion": "\\\\boxed{1}", "answer": "1"}\n'
PROBLEM = b'{"problem": "%s", "solution": "\\\\boxed{1}", "level": "Level 1", "type": "Algebra"}\n'


@pytest.mark.parametrize("payload,word", [
    (b"caf\xe9", "not valid UTF-8 (byte 0xe9"),
    (b"x" * (2 << 20), "line longer than 1 MB"),  # refused as it is read, not parsed or dropped
])
def test_a_data_file_fault_names_file_and_line_in_train_and_grade(payload, word, tmp_path, capsys):
    completions, problems = tmp_path / "completions.jsonl", tmp_path / "problems.jsonl"
    completions.write_bytes(GRADED * 2 + GRADED.replace(b"\\\\boxed{1}", payload))
    problems.write_bytes(PROBLEM % b"1+0" * 2 + PROBLEM % payload)
    out = tmp_path / "graded.jsonl"
    code, err = run_main(["grade", "--jsonl", str(completions), "--out", str(out), "--workers", "1"], capsys)
    assert code == 2 and not out.exists()
    one_error_line(err, f"{completions}:3: {word}")
    code, err = run_main(["train", "--run-dir", str(tmp_path / "r"), *sets(*TINY, f"data={problems}")], capsys)
    assert code == 2
    one_error_line(err, f"{problems}:3: {word}")
    assert not (tmp_path / "r").exists()  # the file is scanned before a run folder is claimed


def test_crlf_and_nul_lines_are_graded_as_before(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    data.write_bytes(b'{"completion": "\\\\boxed{1}", "answer": "1"}\r\n{"completion": "\\\\boxed{2}\x00", "answer": "2"}\r\n')
    out = tmp_path / "graded.jsonl"
    code, _ = run_main(["grade", "--jsonl", str(data), "--out", str(out), "--workers", "1"], capsys)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert code == 0 and rows[0]["status"] == "correct"
    assert rows[1]["status"] == "error" and "line 2" in rows[1]["detail"]  # a raw NUL is not JSON: that line's error
