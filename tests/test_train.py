"""`rlvr train` end to end on SmolLM2 and the shared MATH subset (CPU), and kill/resume equality."""

import json
import os
import subprocess
import sys

import pytest

from rlvr_utils.config import TrainConfig, parse_sets
from rlvr_utils.runs import RunDir

FAST = ["steps=2", "prompts_per_step=2", "rollouts_per_prompt=2", "max_tokens=24", "eval_problems=4",
        "eval_samples=2", "eval_every=0", "extraction=boxed_or_answer_is", "levels=Level 1", "grade_workers=1"]


def rlvr(*args, check=True, env=None):
    p = subprocess.run([sys.executable, "-m", "rlvr_utils.cli", *args], capture_output=True, text=True,
                       timeout=900, env={**os.environ, **(env or {})})
    if check and p.returncode != 0:
        raise AssertionError(f"rlvr {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


def sets(*pairs):
    return [x for p in pairs for x in ("--set", p)]


def test_bad_config_rejected_before_loading(tmp_path):
    for bad, msg in (("lr=-1", "lr must be > 0"), ("objective=ppo", "objective='ppo' not in"),
                     ("prompts_per_step=3", "not divisible by mini_batches"), ("nope=1", "unknown config key")):
        p = rlvr("train", "--run-dir", str(tmp_path / "r"), *sets(bad, "mini_batches=4"), check=False)
        assert p.returncode == 2 and msg in p.stderr, (bad, p.stderr)
        assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="not a valid int"):
        parse_sets(["steps=two"])
    assert TrainConfig.from_dict(parse_sets(["lam=0.5", "precision=fp32"])).lam == 0.5


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["psr", "nsr", "w_reinforce", "reinforce", "grpo"])
def test_train_two_steps_writes_run_files(tmp_path, objective):
    run = tmp_path / objective
    # vLLM (the default engine where installed) for one objective, the HF engine for the rest: both paths run
    engine = "vllm" if objective == "w_reinforce" else "hf"
    rlvr("train", "--run-dir", str(run), *sets(*FAST, f"objective={objective}", f"engine={engine}"))
    r = RunDir(run)
    assert r.status()["state"] == "done"
    cfg = json.loads(r.config.read_text())
    assert cfg["objective"] == objective and cfg["_meta"]["versions"]["torch"]
    metrics = r.read_metrics()
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        assert m["samples"] == 4 and 0 <= m["kept"] <= 4
        for k in ("reward_mean", "loss", "grad_norm", "entropy_kept", "sampled_nll", "clip_frac", "response_len_mean",
                  "truncation_rate", "prompts_all_correct", "status_timeout", "time_generate", "time_train"):
            assert k in m
    evals = r.read_evals()
    assert [e["step"] for e in evals] == [0, 2]
    assert {"greedy", "pass_at_k", "t1", "greedy_by_level"} <= evals[0].keys()
    assert sorted(p.name for p in r.samples.iterdir()) == [
        "eval_00000.jsonl", "eval_00002.jsonl", "step_00001.jsonl", "step_00002.jsonl"]
    rec = json.loads((r.samples / "step_00001.jsonl").read_text().splitlines()[0])
    assert {"problem_id", "completion", "extracted", "gold", "status", "reward", "advantage", "kept"} <= rec.keys()
    assert list(r.tb.glob("events.*"))
    assert not r.checkpoints.exists()  # removed when done unless keep_checkpoint


@pytest.mark.slow
def test_killed_and_resumed_run_matches_uninterrupted(tmp_path, tiny_model_path):
    # the tiny model: SmolLM2's checkpoints (1.6 GB with AdamW state, one per step here) made this the
    # suite's slowest test (218 s on a 2-core Zen 3); resume equality does not depend on the model's size
    common = sets(*FAST, "steps=3", "checkpoint_every=1", "objective=w_reinforce", "engine=hf", "lr=1e-4",
                  "eval_every=0", f"model={tiny_model_path}")
    rlvr("train", "--run-dir", str(tmp_path / "full"), *common)
    # the interrupted run stops right after its step-2 checkpoint, as a kill there would leave it
    rlvr("train", "--run-dir", str(tmp_path / "cut"), *common, "--stop-after", "2")
    cut = RunDir(tmp_path / "cut")
    assert cut.status()["state"] == "running" and (cut.checkpoints / "latest" / "state.pt").exists()
    p = rlvr("train", "--run-dir", str(tmp_path / "cut"), *common, check=False)
    assert p.returncode == 2 and "--resume" in p.stderr  # never silently overwrites a run
    rlvr("train", "--run-dir", str(tmp_path / "cut"), "--resume")
    full, cut = RunDir(tmp_path / "full").read_metrics(), RunDir(tmp_path / "cut").read_metrics()
    assert [m["step"] for m in cut] == [1, 2, 3]
    skip = {k for k in full[0] if k.startswith("time_")}
    for a, b in zip(full, cut):
        assert {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}
    fe, ce = RunDir(tmp_path / "full").read_evals(), RunDir(tmp_path / "cut").read_evals()
    assert [e["greedy"] for e in fe] == [e["greedy"] for e in ce]


def test_resume_refuses_weights_rebuilt_under_the_same_name(tmp_path, tiny_model_path):
    # a warm-start rung rebuilt on another CPU keeps its path but not its bits: resuming a cell on it would
    # mix two models under one config.json (its step-0 evaluation and checkpoints are of the old weights)
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from rlvr_utils.train import train

    model = shutil.copytree(tiny_model_path, tmp_path / "rung")
    cfg = TrainConfig.from_dict(parse_sets([*FAST, "steps=2", "checkpoint_every=1", "engine=hf", f"model={model}"]))
    train(cfg, tmp_path / "run", stop_after=1, log=lambda _: None)
    m = AutoModelForCausalLM.from_pretrained(model)
    with torch.no_grad():
        m.lm_head.weight.add_(1e-3)  # the same recipe, other rounding: a few bits differ
    m.save_pretrained(model)
    with pytest.raises(ValueError, match="rebuilt on another machine"):
        train(cfg, tmp_path / "run", resume=True, log=lambda _: None)
    assert RunDir(tmp_path / "run").read_metrics()[-1]["step"] == 1  # nothing written past the refusal
    from rlvr_utils.train import _check_same_weights

    for saved, now in ((None, "f1a4"), ("f1a4", None), ("f1a4", "f1a4")):  # a config from before the key; a hub id
        _check_same_weights(RunDir(tmp_path / "run"), "m", saved, now)


def test_a_new_run_beside_runs_on_other_weights_is_refused_unless_allowed(tmp_path, tiny_model_path):
    # a rung rebuilt on another CPU keeps its name but not its bits (nor always its prior): a new cell on it
    # beside cells of the old build would start from another model, and their contrasts carry the difference
    from rlvr_utils.models import fingerprint
    from rlvr_utils.train import _check_sibling_builds, _same_model, train

    cfg = TrainConfig.from_dict(parse_sets([*FAST, "steps=1", "engine=hf", f"model={tiny_model_path}"]))
    now, logged = fingerprint(tiny_model_path), []
    (tmp_path / "old").mkdir()
    cfg.save(tmp_path / "old" / "config.json", {"model_fingerprint": "0123456789abcdef"})
    with pytest.raises(ValueError, match=r"ran on other weights: 0123456789abcdef \(old\).*--allow-new-build"):
        train(cfg, tmp_path / "new", log=lambda _: None)
    assert not (tmp_path / "new" / "config.json").exists()  # refused before anything is written
    train(cfg, tmp_path / "new", log=logged.append, allow_new_build=True)
    assert json.loads((tmp_path / "new" / "config.json").read_text())["_meta"]["other_builds"] == {"0123456789abcdef": ["old"]}
    assert any(line.startswith("warning:") and now in line for line in logged)
    # once a sibling runs on this build, mixing was chosen: the next goes on, and its config says so too
    assert _check_sibling_builds(RunDir(tmp_path / "next"), cfg.model, tiny_model_path, now, False,
                                 logged.append) == {"0123456789abcdef": ["old"]}
    assert "(as new did)" in logged[-1]
    # runs of another model, and runs that saved no fingerprint (a hub id), say nothing of this one's build
    (tmp_path / "other").mkdir()
    cfg.replace(model="Qwen/Qwen2.5-0.5B-Instruct").save(tmp_path / "other" / "config.json", {"model_fingerprint": "ffff"})
    (tmp_path / "hub").mkdir()
    cfg.save(tmp_path / "hub" / "config.json", {"model_fingerprint": None})
    assert "other" not in str(_check_sibling_builds(RunDir(tmp_path / "next"), cfg.model, tiny_model_path, now, False,
                                                    logged.append))
    assert _check_sibling_builds(RunDir(tmp_path / "x"), cfg.model, tiny_model_path, None, False, logged.append) == {}
    assert _same_model("warm:n=1000", "warm:n=1000,seed=0") and not _same_model("warm:n=1000", "warm:n=200")


def test_budget_beyond_model_context_is_an_error_before_loading(tmp_path, tiny_model_path):
    from rlvr_utils.prompts import PromptTooLong
    from rlvr_utils.train import train

    cfg = TrainConfig(model=tiny_model_path, max_prompt_tokens=8000, max_tokens=512, max_model_len=9000)
    with pytest.raises(PromptTooLong, match="exceed the model's context of 8192"):
        train(cfg, tmp_path / "r")
    assert not (tmp_path / "r" / "config.json").exists()


@pytest.mark.slow
def test_step0_evaluation_is_shared_by_a_grids_objectives_and_equals_its_own(tmp_path, tiny_model_path):
    # a grid's objectives start from the same model with the same seed: the second copies the first's
    # step-0 evaluation, and the copy must equal what it would have sampled itself (run alone elsewhere)
    common = [*FAST, "steps=1", "engine=hf", f"model={tiny_model_path}"]
    rlvr("train", "--run-dir", str(tmp_path / "grid" / "psr"), *sets(*common, "objective=psr"))
    rlvr("train", "--run-dir", str(tmp_path / "grid" / "nsr"), *sets(*common, "objective=nsr", "lr=3e-5"))
    rlvr("train", "--run-dir", str(tmp_path / "alone" / "nsr"), *sets(*common, "objective=nsr", "lr=3e-5"))
    shared, alone = RunDir(tmp_path / "grid" / "nsr"), RunDir(tmp_path / "alone" / "nsr")
    assert shared.read_evals()[0]["reused_from"] == "psr" and "reused_from" not in alone.read_evals()[0]
    drop = ("step", "seconds", "reused_from")
    assert ({k: v for k, v in shared.read_evals()[0].items() if k not in drop}
            == {k: v for k, v in alone.read_evals()[0].items() if k not in drop})
    assert (shared.samples / "eval_00000.jsonl").read_text() == (alone.samples / "eval_00000.jsonl").read_text()
    assert "reused_from" not in shared.read_evals()[-1]  # the final evaluation is its own


def test_base_eval_key_ignores_training_settings_only():
    from rlvr_utils.evaluate import base_eval_key

    meta = {"model_path": "/m", "model_fingerprint": "ab", "engine": "vllm", "versions": {"math-verify": "0.9.0"},
            "hardware": {"device": "cpu", "precision": "fp32", "name": "AMD EPYC", "threads": 2}}
    saved = {**TrainConfig().to_dict(), "_meta": meta}
    key = base_eval_key(saved)
    assert key == base_eval_key({**saved, "objective": "nsr", "lr": 3e-4, "steps": 5, "kl_coef": 0.1,
                                 "_meta": {**meta, "hardware": {**meta["hardware"], "threads": 1}, "git": "x"}})
    for change in ({"seed": 1}, {"eval_samples": 8}, {"eval_temperature": 1.0}, {"eval_problems": 7}, {"data": "x"},
                   {"prompt": "answer_is"}, {"max_tokens": 99}, {"grade_workers": 1},
                   {"_meta": {**meta, "model_path": "/n"}}, {"_meta": {**meta, "model_fingerprint": "cd"}},
                   {"_meta": {**meta, "engine": "hf"}}, {"_meta": {**meta, "versions": {"math-verify": "0.8.0"}}},
                   {"_meta": {**meta, "hardware": {**meta["hardware"], "precision": "bf16"}}}):
        assert base_eval_key({**saved, **change}) != key, change
    assert base_eval_key({**saved, "eval_max_tokens": 99, "max_tokens": 5}) != key
    assert base_eval_key({**saved, "eval_max_tokens": 512, "max_tokens": 99}) == key  # eval length is what counts
