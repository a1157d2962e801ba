"""What a run shares with its siblings: the step-0 evaluation, and the build of its rung."""

import json

import pytest
from conftest import TINY_RUN, merge

from rlvr_utils.core.config import TrainConfig, parse_sets
from rlvr_utils.core.runs import RunDir

pytestmark = pytest.mark.slow  # real models, papermill, vLLM or the grading pool: `make test`, not test-fast


def test_resume_refuses_weights_rebuilt_under_the_same_name(tmp_path, fam_tiny_path):
    # a warm-start rung rebuilt on another CPU keeps its path but not its bits: resuming a cell on it would
    # mix two models under one config.json (its step-0 evaluation and checkpoints are of the old weights)
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from rlvr_utils.train.loop import train

    model = shutil.copytree(fam_tiny_path, tmp_path / "rung")
    cfg = TrainConfig.from_dict(parse_sets(merge(*TINY_RUN, "steps=2", "checkpoint_every=1", f"model={model}")))
    train(cfg, tmp_path / "run", stop_after=1, log=lambda _: None)
    m = AutoModelForCausalLM.from_pretrained(model)
    with torch.no_grad():
        m.lm_head.weight.add_(1e-3)  # the same recipe, other rounding: a few bits differ
    m.save_pretrained(model)
    with pytest.raises(ValueError, match="rebuilt on another machine"):
        train(cfg, tmp_path / "run", resume=True, log=lambda _: None)
    assert RunDir(tmp_path / "run").read_metrics()[-1]["step"] == 1  # nothing written past the refusal
    from rlvr_utils.train.builds import check_same_weights as _check_same_weights

    for saved, now in ((None, "f1a4"), ("f1a4", None), ("f1a4", "f1a4")):  # a config from before the key; a hub id
        _check_same_weights(RunDir(tmp_path / "run"), "m", saved, now)


def test_a_new_run_beside_runs_on_other_weights_is_refused_unless_allowed(tmp_path, fam_tiny_path):
    # a rung rebuilt on another CPU keeps its name but not its bits (nor always its prior): a new cell on it
    # beside cells of the old build would start from another model, and their contrasts carry the difference
    from rlvr_utils.core.models import fingerprint
    from rlvr_utils.train.builds import check_sibling_builds as _check_sibling_builds
    from rlvr_utils.priors.recipes import same_model as _same_model
    from rlvr_utils.train.loop import train

    cfg = TrainConfig.from_dict(parse_sets(merge(*TINY_RUN, "steps=1", f"model={fam_tiny_path}")))
    now, logged = fingerprint(fam_tiny_path), []
    (tmp_path / "old").mkdir()
    cfg.save(tmp_path / "old" / "config.json", {"model_fingerprint": "0123456789abcdef"})
    with pytest.raises(ValueError, match=r"ran on other weights: 0123456789abcdef \(old\).*--allow-new-build"):
        train(cfg, tmp_path / "new", log=lambda _: None)
    assert not (tmp_path / "new" / "config.json").exists()  # refused before anything is written
    train(cfg, tmp_path / "new", log=logged.append, allow_new_build=True)
    assert json.loads((tmp_path / "new" / "config.json").read_text())["_meta"]["other_builds"] == {"0123456789abcdef": ["old"]}
    assert any(line.startswith("warning:") and now in line for line in logged)
    # once a sibling runs on this build, mixing was chosen: the next goes on, and its config says so too
    assert _check_sibling_builds(RunDir(tmp_path / "next"), cfg.model, fam_tiny_path, now, False,
                                 logged.append) == {"0123456789abcdef": ["old"]}
    assert "(as new did)" in logged[-1]
    # runs of another model, and runs that saved no fingerprint (a hub id), say nothing of this one's build
    (tmp_path / "other").mkdir()
    cfg.replace(model="Qwen/Qwen2.5-0.5B-Instruct").save(tmp_path / "other" / "config.json", {"model_fingerprint": "ffff"})
    (tmp_path / "hub").mkdir()
    cfg.save(tmp_path / "hub" / "config.json", {"model_fingerprint": None})
    assert "other" not in str(_check_sibling_builds(RunDir(tmp_path / "next"), cfg.model, fam_tiny_path, now, False,
                                                    logged.append))
    assert _check_sibling_builds(RunDir(tmp_path / "x"), cfg.model, fam_tiny_path, None, False, logged.append) == {}
    assert _same_model("warm:n=1000", "warm:n=1000,seed=0") and not _same_model("warm:n=1000", "warm:n=200")


def test_step0_evaluation_is_shared_by_a_grids_objectives_and_equals_its_own(tmp_path, fam_tiny_path):
    # a grid's objectives start from the same model with the same seed: the second copies the first's
    # step-0 evaluation, and the copy must equal what it would have sampled itself (run alone elsewhere)
    from rlvr_utils.train.loop import train

    common = merge(*TINY_RUN, "steps=1", f"model={fam_tiny_path}")
    for where, extra in (("grid/psr", ["objective=psr"]), ("grid/nsr", ["objective=nsr", "lr=3e-5"]),
                         ("alone/nsr", ["objective=nsr", "lr=3e-5"])):
        train(TrainConfig.from_dict(parse_sets(merge(*common, *extra))), tmp_path / where, log=lambda _: None)
    shared, alone = RunDir(tmp_path / "grid" / "nsr"), RunDir(tmp_path / "alone" / "nsr")
    assert shared.read_evals()[0]["reused_from"] == "psr" and "reused_from" not in alone.read_evals()[0]
    drop = ("step", "seconds", "reused_from")
    assert ({k: v for k, v in shared.read_evals()[0].items() if k not in drop}
            == {k: v for k, v in alone.read_evals()[0].items() if k not in drop})
    assert (shared.samples / "eval_00000.jsonl").read_text() == (alone.samples / "eval_00000.jsonl").read_text()
    assert "reused_from" not in shared.read_evals()[-1]  # the final evaluation is its own

    # another arm of the study in its own folder (here: another loss normalisation) copies it through `base_from`
    train(TrainConfig.from_dict(parse_sets(merge(*common, "objective=nsr", "lr=3e-5", "loss_norm=kept",
                                                 f"base_from={tmp_path / 'grid'}"))), tmp_path / "arm" / "nsr",
          log=lambda _: None)
    arm = RunDir(tmp_path / "arm" / "nsr")
    assert arm.read_evals()[0]["reused_from"] in (str(tmp_path / "grid" / "nsr"), str(tmp_path / "grid" / "psr"))
    assert ({k: v for k, v in arm.read_evals()[0].items() if k not in drop}
            == {k: v for k, v in alone.read_evals()[0].items() if k not in drop})

    # a study commits its eval rows, not its sample files: a sibling whose samples stayed on another machine
    # still serves, through the per-problem counts its row carries (what the analysis reads)
    import shutil

    from rlvr_utils.study.frames import eval_counts

    shutil.rmtree(RunDir(tmp_path / "grid" / "psr").samples)
    shutil.rmtree(tmp_path / "grid" / "nsr")
    train(TrainConfig.from_dict(parse_sets(merge(*common, "objective=nsr", "lr=3e-5"))), tmp_path / "grid" / "nsr",
          log=lambda _: None)
    again = RunDir(tmp_path / "grid" / "nsr")
    assert again.read_evals()[0]["reused_from"] == "psr" and not (again.samples / "eval_00000.jsonl").exists()
    assert eval_counts(again.path).equals(eval_counts(alone.path))


def test_base_eval_key_ignores_training_settings_only():
    from rlvr_utils.train.builds import base_eval_key

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
