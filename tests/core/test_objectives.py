"""The objectives' registry and advantages by hand; a new objective is one decorated function."""

import pytest
import torch

from rlvr_utils.core.objectives import OBJECTIVES, advantages, knobs, objective_kwargs, register

C = torch.tensor([True, False, True, False, False, False])  # 3 prompts x 2 samples
G = torch.tensor([0, 0, 1, 1, 2, 2])


def test_registry_names():
    assert set(OBJECTIVES) == {"psr", "nsr", "w_reinforce", "reinforce", "grpo"}
    with pytest.raises(ValueError, match="unknown objective 'ppo'"):
        advantages("ppo", C, G)


@pytest.mark.parametrize("name,adv,keep", [
    ("psr", [1, 1, 1, 1, 1, 1], [1, 0, 1, 0, 0, 0]),
    ("nsr", [-1, -1, -1, -1, -1, -1], [0, 1, 0, 1, 1, 1]),
    ("w_reinforce", [0.1, -1, 0.1, -1, -1, -1], [1, 1, 1, 1, 1, 1]),
    ("reinforce", [1, -1, 1, -1, -1, -1], [1, 1, 1, 1, 1, 1]),
])
def test_advantages_and_keep(name, adv, keep):
    a, k = advantages(name, C, G, lam=0.1)
    assert torch.allclose(a[k], torch.tensor(adv, dtype=torch.float)[k])
    assert k.tolist() == [bool(x) for x in keep]


def test_w_reinforce_lambda_and_grpo_by_hand():
    a, _ = advantages("w_reinforce", C, G, lam=0.5)
    assert a.tolist() == [0.5, -1, 0.5, -1, -1, -1]
    a, _ = advantages("grpo", C, G, grpo_scale_std=False)
    assert a.tolist() == [0.5, -0.5, 0.5, -0.5, 0.0, 0.0]
    a, _ = advantages("grpo", C, G, grpo_scale_std=True)
    s = torch.tensor([1.0, 0.0]).std().item()  # unbiased std of {1, 0}
    assert torch.allclose(a, torch.tensor([0.5 / s, -0.5 / s, 0.5 / s, -0.5 / s, 0, 0]), atol=1e-5)


@pytest.mark.slow
def test_a_new_objective_is_one_decorated_function(tmp_path, tiny_model_path, math_dir):
    from rlvr_utils.core.config import TrainConfig
    from rlvr_utils.core.runs import RunDir
    from rlvr_utils.train.loop import train

    @register("scaled_nsr")
    def scaled_nsr(correct, groups, alpha: float = 1.0):
        """NSR with a knob: incorrect samples only, advantage -alpha."""
        return -alpha * torch.ones(len(correct)), ~correct

    try:
        assert knobs("scaled_nsr") == {"alpha": 1.0}
        a, k = advantages("scaled_nsr", torch.tensor([True, False]), torch.tensor([0, 0]), alpha=3.0)
        assert a.tolist() == [-3.0, -3.0] and k.tolist() == [False, True]
        with pytest.raises(ValueError, match="beta not a knob of 'scaled_nsr'"):
            TrainConfig(objective="scaled_nsr", objective_args={"beta": 1})
        cfg = TrainConfig(model=tiny_model_path, data=str(math_dir), objective="scaled_nsr",
                          objective_args={"alpha": 3.0}, steps=1, prompts_per_step=2, rollouts_per_prompt=2,
                          max_tokens=8, eval_problems=0, engine="hf", grade_workers=1, lr=1e-4,
                          levels="Level 1", precision="fp32")
        assert objective_kwargs(cfg) == {"alpha": 3.0}
        train(cfg, tmp_path / "r", log=lambda m: None)
        run = RunDir(tmp_path / "r")
        (m,) = run.read_metrics()
        assert run.status()["state"] == "done" and m["optimizer_steps"] == 1 and m["tokens_trained"] > 0
        recs = [r for r in (run.samples / "step_00001.jsonl").read_text().splitlines()]
        assert all('"advantage": -3.0' in r for r in recs)
    finally:
        OBJECTIVES.pop("scaled_nsr", None)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_knob_is_typed_and_its_default_passes_its_own_check(name):
    from rlvr_utils.core.bounds import value_error
    from rlvr_utils.core.objectives import knob_types

    assert set(knob_types(name)) == set(knobs(name))
    assert all(value_error(k, hint, knobs(name)[k]) is None for k, hint in knob_types(name).items())


@pytest.mark.parametrize("args,word", [
    ({"grpo_scale_std": "false"}, "grpo_scale_std must be a bool, got 'false'"),  # not silently true
    ({"grpo_scale_std": 1}, "grpo_scale_std must be a bool"),
    ({"eps": "oops"}, "eps must be a float"),
    ({"eps": 0.0}, "eps must be > 0"),
    ({"eps": float("inf")}, "eps must be a finite number"),
    ({"eps": True}, "eps must be a float"),
])
def test_a_knob_value_is_checked_against_its_annotation(args, word):
    from rlvr_utils.core.config import TrainConfig

    with pytest.raises(ValueError, match=word):
        TrainConfig(objective="grpo", objective_args=args)
    assert objective_kwargs(TrainConfig(objective="grpo", objective_args={"grpo_scale_std": False, "eps": 1}))[
        "grpo_scale_std"] is False


def test_an_untyped_knob_is_refused_at_registration():
    with pytest.raises(TypeError, match="need a type annotation"):
        @register("untyped")
        def untyped(correct, groups, alpha=1.0):
            return -alpha * torch.ones(len(correct)), ~correct
    assert "untyped" not in OBJECTIVES
