"""The loss primitives on hand-computed tensors, and a new objective registered and trained in one step."""

import math

import pytest
import torch

from rlvr_utils import losses
from rlvr_utils.losses import (aggregate, group_advantages, kl_k3, masked_mean, masked_sum, pg_loss, policy_loss,
                               response_logprobs, token_logprobs)
from rlvr_utils.objectives import OBJECTIVES, advantages, knobs, objective_kwargs, register


@pytest.mark.parametrize("T", [1.0, 0.6])
def test_token_logprobs_and_entropy_at_temperature_by_hand(T):
    logits = torch.tensor([[[2.0, 1.0, 0.0]]])  # B=1, T=1, V=3
    z = [math.exp(x / T) for x in (2.0, 1.0, 0.0)]
    p = [x / sum(z) for x in z]
    lp, ent = token_logprobs(logits, torch.tensor([[1]]), temperature=T)
    assert lp.item() == pytest.approx(math.log(p[1]), abs=1e-6)
    assert ent.item() == pytest.approx(-sum(q * math.log(q) for q in p), abs=1e-6)


@pytest.mark.parametrize("T", [1.0, 0.7])
def test_entropy_bonus_gradient_equals_autograd_of_the_plain_formula(T, monkeypatch):
    """The memory-lean entropy (chunked rows, only log p saved) against autograd of -(p log p).sum in
    values and gradients through log-softmax and the temperature, over several row chunks."""
    monkeypatch.setattr(losses, "ENTROPY_ROWS", 3)  # 2 x 5 = 10 rows: chunks of 3, 3 and 4
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 11, generator=g, requires_grad=True)
    tgt = torch.randint(0, 11, (2, 5), generator=g)
    w = torch.randn(2, 5, generator=g)
    lp, ent = token_logprobs(logits, tgt, T, entropy_grad=True)
    (lp.sum() + (w * ent).sum()).backward()
    ours, logits.grad = logits.grad.clone(), None
    ref_all = torch.log_softmax(logits / T, -1)
    ref_ent = -(ref_all.exp() * ref_all).sum(-1)
    (ref_all.gather(-1, tgt[..., None]).sum() + (w * ref_ent).sum()).backward()
    assert torch.allclose(ent, ref_ent, atol=1e-6) and torch.allclose(ours, logits.grad, atol=1e-6)
    assert not torch.equal(ours, torch.zeros_like(ours))
    l64 = torch.log_softmax(logits.detach().double(), -1).requires_grad_()
    assert torch.autograd.gradcheck(losses.Entropy.apply, (l64,))
    _, ent_nograd = token_logprobs(logits, tgt, T)  # no bonus: the same values, no graph
    assert not ent_nograd.requires_grad and torch.equal(ent_nograd, ent.detach())


def test_entropy_bonus_keeps_one_vocabulary_sized_tensor_for_backward():
    """What bounds the paper profile's memory (3072 tokens x 152k vocabulary, 1.9 GB per fp32 copy per
    sample): with an entropy bonus, backward keeps only log-softmax's output of [B, T, V] size."""
    logits = torch.randn(2, 4, 64, requires_grad=True)
    big = set()

    def pack(t):
        if t.numel() >= logits.numel():
            big.add(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lp, ent = token_logprobs(logits, torch.zeros(2, 4, dtype=torch.long), 0.7, entropy_grad=True)
    assert len(big) == 1
    (lp.sum() + ent.sum()).backward()


def test_masked_reductions_and_aggregation_by_hand():
    x = torch.tensor([[1.0, 2.0, 9.0], [3.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    assert masked_sum(x, mask).item() == 6.0
    assert masked_mean(x, mask).item() == 2.0 and masked_mean(x, mask, denom=4.0).item() == 1.5
    assert aggregate(x, mask, "token_mean", 3.0).item() == 2.0
    assert aggregate(x, mask, "seq_mean", 2.0).item() == pytest.approx((1.5 + 3.0) / 2)
    with pytest.raises(ValueError, match="loss_agg"):
        aggregate(x, mask, "sum", 1.0)


def test_on_policy_loss_value_and_gradient():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    adv = torch.tensor([1.0, -1.0])
    loss = aggregate(pg_loss(logp, adv), mask, "token_mean", 3.0)
    assert loss.item() == pytest.approx((1 * 1 + 1 * 2 - 0.5) / 3)  # -A log pi: advantage-weighted NLL
    loss.backward()
    assert torch.allclose(logp.grad, torch.tensor([[-1 / 3, -1 / 3], [1 / 3, 0.0]]))


def test_on_policy_gradient_equals_the_clipped_form_at_ratio_one():
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    base = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.7, -0.1]])
    adv, keep = torch.tensor([0.1, -1.0]), torch.ones(2, dtype=torch.bool)
    grads = []
    for clipped in (False, True):
        logp = base.clone().requires_grad_(True)
        if clipped:
            loss, st = policy_loss(logp, logp.detach(), adv, mask, keep, 0.2, "token_mean", 5.0)
            assert st.clip_frac == 0.0 and st.ratio_mean == 1.0
        else:
            loss = aggregate(pg_loss(logp, adv), mask, "token_mean", 5.0)
        loss.backward()
        grads.append(logp.grad)
    assert torch.allclose(grads[0], grads[1], atol=0, rtol=1e-6)


def test_kl_k3_by_hand_and_clamped():
    logp, ref = torch.tensor([[-1.0]]), torch.tensor([[-1.5]])
    d = -0.5
    assert kl_k3(logp, ref).item() == pytest.approx(math.exp(d) - d - 1)
    assert kl_k3(logp, logp).item() == 0.0
    assert kl_k3(torch.tensor([[-20.0]]), torch.tensor([[0.0]])).item() == 10.0  # verl's low_var_kl clamp


def test_group_advantages_real_valued():
    r = torch.tensor([0.5, 1.5, 2.0, 2.0, 7.0])
    g = torch.tensor([0, 0, 1, 1, 2])
    a = group_advantages(r, g, scale_std=False)
    assert a.tolist() == [-0.5, 0.5, 0.0, 0.0, 0.0]
    s = torch.tensor([0.5, 1.5]).std().item()
    a = group_advantages(r, g, scale_std=True, eps=1e-4)
    assert a[:2].tolist() == pytest.approx([-0.5 / (s + 1e-4), 0.5 / (s + 1e-4)])
    assert a[4].item() == 0.0  # a group of one has nothing to compare with


def test_response_logprobs_match_a_full_forward(tiny_model_path):
    from rlvr_utils.models import load_policy

    model = load_policy(tiny_model_path).eval()
    prompts, responses = [[5, 6, 7], [8, 9]], [[10, 11], [12, 13, 14]]
    with torch.no_grad():
        lp, mask, ent = response_logprobs(model, prompts, responses, temperature=0.6)
        for b, (p, r) in enumerate(zip(prompts, responses)):
            logits = model(torch.tensor([p + r])).logits[0, len(p) - 1 : -1] / 0.6
            want = torch.log_softmax(logits, -1).gather(-1, torch.tensor(r)[:, None]).squeeze(-1)
            assert torch.allclose(lp[b, : len(r)], want, atol=1e-5)
    assert mask.tolist() == [[True, True, False], [True, True, True]]
    assert lp[0, 2] == 0 and ent[0, 2] == 0 and (ent[mask] > 0).all()


@pytest.mark.slow
def test_a_new_objective_is_one_decorated_function(tmp_path, tiny_model_path, math_dir):
    from rlvr_utils.config import TrainConfig
    from rlvr_utils.runs import RunDir
    from rlvr_utils.train import train

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
