"""Matched training signal on a real tiny model (SmolLM2's architecture, 2 random layers: it answers wrong):
dynamic sampling reaches K kept samples (exactly K trained), stops at its cap when K is out of reach, and leaves a
run without it as it was; SGD's step scales with the gradient, AdamW's does not."""

import pytest
import torch
from conftest import TINY_RUN, merge

from rlvr_utils.core.config import TrainConfig, parse_sets

pytestmark = pytest.mark.slow  # real models and the grading pool

ONE_STEP = [*TINY_RUN, "steps=1", "prompts_per_step=2", "rollouts_per_prompt=4", "eval_problems=0", "track_kl=false"]


def one_step(tmp_path, tiny_model_path, name, *extra):
    from rlvr_utils.train.loop import train

    cfg = TrainConfig.from_dict(parse_sets(merge(*ONE_STEP, f"model={tiny_model_path}", *extra)))
    run = train(cfg, tmp_path / name, log=lambda _: None)
    (m,) = run.read_metrics()
    return m, run.read_samples("step_00001")


def test_dynamic_sampling_reaches_k_kept_samples_and_keeps_exactly_k(tmp_path, tiny_model_path):
    m, samples = one_step(tmp_path, tiny_model_path, "nsr", "objective=nsr", "dynamic_kept=13", "dynamic_max_batches=8")
    assert m["kept_short"] == 0 and m["kept"] == 13 and m["kept_drawn"] >= 13
    assert m["batches_drawn"] >= 2 and m["samples_drawn"] == 8 * m["batches_drawn"] == m["samples"] == len(samples)
    assert m["prompts_drawn"] == 2 * m["batches_drawn"]
    assert sum(s["kept"] for s in samples) == 13 and m["samples_trained_total"] == 13
    # the batch that reached K was the first whose running total of kept samples did
    assert m["kept_drawn"] - 13 < 8


def test_dynamic_sampling_stops_at_its_cap(tmp_path, tiny_model_path):
    m, samples = one_step(tmp_path, tiny_model_path, "psr", "objective=psr", "dynamic_kept=1000", "dynamic_max_batches=3")
    assert m["batches_drawn"] == 3 and m["samples_drawn"] == 24 == len(samples)
    assert m["kept_short"] == 1 and m["kept"] == m["kept_drawn"] < 1000
    assert m["kept"] == sum(s["status"] == "correct" for s in samples)  # PSR keeps what it got right, all of it
    assert m["optimizer_steps"] == (1 if m["kept"] else 0)


def test_without_dynamic_sampling_the_step_draws_one_batch_as_before(tmp_path, tiny_model_path):
    plain, s0 = one_step(tmp_path, tiny_model_path, "plain", "objective=nsr")
    dyn, s1 = one_step(tmp_path, tiny_model_path, "dyn", "objective=nsr", "dynamic_kept=1", "dynamic_max_batches=4")
    assert "batches_drawn" not in plain and plain["samples"] == 8
    assert [s["completion"] for s in s0] == [s["completion"] for s in s1[:8]]  # the first batch is the same batch


def test_a_dynamic_run_refuses_a_fixed_count_of_mini_batches():
    with pytest.raises(ValueError, match="mini_batch_size, not mini_batches"):
        TrainConfig(dynamic_kept=8, mini_batches=2)
    with pytest.raises(ValueError, match="optimizer='adam'"):
        TrainConfig(optimizer="adam")


def test_sgd_steps_scale_with_the_gradient_and_adamw_steps_do_not():
    from types import SimpleNamespace

    from rlvr_utils.core.optim import make_optimizer

    def first_step(opt_name, scale):
        w = torch.nn.Parameter(torch.ones(4))
        cfg = SimpleNamespace(optimizer=opt_name, lr=0.1, momentum=0.9, weight_decay=0.0, warmup_steps=0,
                              adam_beta1=0.9, adam_beta2=0.999)
        opt, _ = make_optimizer(cfg, [w])
        (scale * (w * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum()).backward()
        opt.step()
        return (1 - w.detach()).abs()

    assert torch.allclose(first_step("sgd", 0.1), first_step("sgd", 1.0) * 0.1)
    assert torch.allclose(first_step("adamw", 0.1), first_step("adamw", 1.0), rtol=1e-5)  # the scale divided out
