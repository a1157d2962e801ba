"""Objectives and losses on hand-computed tensors."""

import pytest
import torch

from rlvr_utils.losses import loss_denominator, policy_loss
from rlvr_utils.objectives import OBJECTIVES, advantages

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


def _toy():
    # 3 sequences, lengths 2, 3, 1
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    logp = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -0.5], [-3.0, 0.0, 0.0]]) * mask
    return logp, mask


def test_token_mean_and_seq_mean_by_hand():
    logp, mask = _toy()
    adv = torch.tensor([1.0, -1.0, 2.0])
    keep = torch.tensor([True, True, True])
    # ratio = 1 (old = current): loss = -sum(adv_i * 1 over tokens) / denom
    d = loss_denominator(mask, keep, "token_mean", "all")
    assert d == 6
    loss, st = policy_loss(logp, logp.detach(), adv, mask, keep, 0.2, "token_mean", d)
    assert loss.item() == pytest.approx(-(1 * 2 - 1 * 3 + 2 * 1) / 6)
    assert st.clip_frac == 0 and st.ratio_mean == pytest.approx(1.0)
    d = loss_denominator(mask, keep, "seq_mean", "all")
    assert d == 3
    loss, _ = policy_loss(logp, logp.detach(), adv, mask, keep, 0.2, "seq_mean", d)
    assert loss.item() == pytest.approx(-(1 - 1 + 2) / 3)


def test_gradient_of_reinforce_equals_logp_weighted():
    logp, mask = _toy()
    logp = logp.clone().requires_grad_(True)
    adv = torch.tensor([1.0, -1.0, 2.0])
    keep = torch.ones(3, dtype=torch.bool)
    loss, _ = policy_loss(logp, logp.detach(), adv, mask, keep, 0.2, "token_mean", 6.0)
    loss.backward()
    # d loss / d logp_t = -adv / denom on real tokens, 0 on padding
    expect = -(adv[:, None] * mask) / 6.0
    assert torch.allclose(logp.grad, expect)


def test_clip_by_hand():
    mask = torch.ones((1, 3), dtype=torch.bool)
    old = torch.zeros((1, 3))
    logp = torch.log(torch.tensor([[1.5, 0.9, 0.5]]))  # ratios 1.5, 0.9, 0.5
    keep = torch.ones(1, dtype=torch.bool)
    # positive advantage: min(r, clip(r)) -> 1.2, 0.9, 0.5
    loss, st = policy_loss(logp, old, torch.tensor([1.0]), mask, keep, 0.2, "token_mean", 3.0)
    assert loss.item() == pytest.approx(-(1.2 + 0.9 + 0.5) / 3)
    assert st.clip_frac == pytest.approx(2 / 3)
    # negative advantage: min(-r, -clip(r)) -> -1.5, -0.9, -0.8
    loss, _ = policy_loss(logp, old, torch.tensor([-1.0]), mask, keep, 0.2, "token_mean", 3.0)
    assert loss.item() == pytest.approx((1.5 + 0.9 + 0.8) / 3)


def test_psr_plus_nsr_equals_reinforce_under_all_norm():
    logp, mask = _toy()
    c = torch.tensor([True, False, False])
    g = torch.tensor([0, 1, 2])
    total = 0.0
    for name in ("psr", "nsr"):
        a, k = advantages(name, c, g)
        d = loss_denominator(mask, k, "token_mean", "all")
        total += policy_loss(logp, logp.detach(), a, mask, k, 0.2, "token_mean", d)[0].item()
    a, k = advantages("reinforce", c, g)
    d = loss_denominator(mask, k, "token_mean", "all")
    assert total == pytest.approx(policy_loss(logp, logp.detach(), a, mask, k, 0.2, "token_mean", d)[0].item())


def test_kept_norm_makes_update_size_independent_of_filter():
    logp, mask = _toy()
    a = torch.ones(3)
    one = torch.tensor([True, False, False])
    all_ = torch.ones(3, dtype=torch.bool)
    # "kept": one kept sample gives the same per-token loss as if the batch held only it
    d = loss_denominator(mask, one, "token_mean", "kept")
    assert d == 2
    loss, _ = policy_loss(logp, logp.detach(), a, mask, one, 0.2, "token_mean", d)
    assert loss.item() == pytest.approx(-1.0)
    # "all": the same sample is diluted by the tokens of the samples that were filtered out
    d = loss_denominator(mask, one, "token_mean", "all")
    loss_all, _ = policy_loss(logp, logp.detach(), a, mask, one, 0.2, "token_mean", d)
    assert loss_all.item() == pytest.approx(-2 / 6)
    assert loss_denominator(mask, all_, "token_mean", "kept") == loss_denominator(mask, all_, "token_mean", "all")
    with pytest.raises(ValueError, match="loss_norm"):
        loss_denominator(mask, one, "token_mean", "some")
