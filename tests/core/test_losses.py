"""The loss primitives on hand-computed tensors."""

import math

import pytest
import torch

from rlvr_utils.core import losses
from rlvr_utils.core.losses import (aggregate, group_advantages, kl_k3, loss_denominator, masked_mean, masked_sum, pg_loss,
                               policy_loss, response_logprobs, token_logprobs)
from rlvr_utils.core.objectives import advantages


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
    from rlvr_utils.core.models import load_policy

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
