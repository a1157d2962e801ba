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
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_selected_logprobs_equal_autograd_of_the_plain_formula(T, dtype, monkeypatch):
    """The memory-lean log-probs and entropy (chunked rows, only the logits kept, the gradient formed a chunk at a
    time) against autograd of log_softmax, gather and -(p log p).sum, in values and gradients through the
    temperature, over several row chunks, with and without an entropy bonus, from fp32 or bf16 logits."""
    monkeypatch.setattr(losses, "LOGIT_ROWS", 3)  # 2 x 5 = 10 rows: chunks of 3, 3 and 4
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 11, generator=g).to(dtype).requires_grad_()
    tgt = torch.randint(0, 11, (2, 5), generator=g)
    v, w = torch.randn(2, 5, generator=g), torch.randn(2, 5, generator=g)
    ref_all = torch.log_softmax(logits.float() / T, -1)
    ref_lp, ref_ent = ref_all.gather(-1, tgt[..., None]).squeeze(-1), -(ref_all.exp() * ref_all).sum(-1)
    tol = dict(atol=1e-6, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-2, rtol=1e-2)  # bf16's gradient
    for bonus in (True, False):
        lp, ent = token_logprobs(logits, tgt, T, entropy_grad=bonus)
        ((v * lp).sum() + (w * ent).sum() * bonus).backward()
        ours, logits.grad = logits.grad.clone(), None
        ((v * ref_lp).sum() + (w * ref_ent).sum() * bonus).backward(retain_graph=True)
        assert torch.allclose(lp, ref_lp, atol=1e-6) and torch.allclose(ent, ref_ent, atol=1e-6)
        assert torch.allclose(ours.float(), logits.grad.float(), **tol) and ours.dtype == dtype
        assert ent.requires_grad == bonus and not torch.equal(ours, torch.zeros_like(ours))
        logits.grad = None
    _, ent_nograd = token_logprobs(logits.detach(), tgt, T)  # no graph: the same values
    assert not ent_nograd.requires_grad and torch.equal(ent_nograd, ent.detach())
    l64 = logits.detach().double().view(-1, 11).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: losses.SelectedLogprobs.apply(x, tgt.view(-1), T, False), (l64,))


def test_the_head_output_is_the_one_vocabulary_sized_tensor_and_takes_its_own_gradient():
    """What bounds the paper profile's memory (3072 tokens x 152k vocabulary, 1.9 GB per fp32 copy per
    sample): backward keeps only the logits of [N, V] size, and with `consume` writes their gradient into them."""
    x = torch.randn(8, 64, requires_grad=True)
    big = set()

    def pack(t):
        if t.numel() >= 8 * 64:
            big.add(t.untyped_storage().data_ptr())
        return t

    logits = x * 2.0  # stands for the head's output: not a leaf, not needed after
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lp, ent = token_logprobs(logits, torch.zeros(8, dtype=torch.long), 0.7, entropy_grad=True, consume=True)
    assert len(big) == 1
    (lp.sum() + ent.sum()).backward()
    y = (x.detach() * 2.0).requires_grad_()  # the same, not consumed
    lp2, ent2 = token_logprobs(y, torch.zeros(8, dtype=torch.long), 0.7, entropy_grad=True)
    (lp2.sum() + ent2.sum()).backward()
    assert torch.allclose(x.grad, 2.0 * y.grad) and torch.equal(logits.detach(), y.grad)  # consumed: now its gradient


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


def test_microbatch_loss_by_hand():
    """The whole loss of one micro-batch, tensors in and (loss, statistics) out, against a hand computation (as
    CS336 a5 tests its per-token losses): on-policy and clipped, an entropy bonus, the k3 KL loss, the mismatch."""
    from rlvr_utils.core.losses import LossSettings, microbatch_loss

    mask = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    adv = torch.tensor([1.0, -1.0])
    sampler = torch.tensor([[-1.1, -2.0], [-0.5, 0.0]])
    ent = torch.tensor([[0.5, 1.0], [2.0, 0.0]])
    ref = torch.tensor([[-1.5, -2.0], [-0.5, 0.0]])
    s = LossSettings("token_mean", clip_eps=0.2, entropy_coef=0.1, kl_coef=0.5)
    k3 = math.exp(-0.5) + 0.5 - 1  # token (0, 0): d = ref - logp = -0.5; the others 0
    logp = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]], requires_grad=True)
    loss, st = microbatch_loss(logp, mask, adv, 3.0, s, sampler, entropy=ent, ref_logp=ref)
    # -A log pi: 1 + 2 - 0.5 over 3 tokens; minus 0.1 x the entropy's 3.5 / 3; plus 0.5 x k3 / 3
    assert loss.item() == pytest.approx(2.5 / 3 - 0.1 * 3.5 / 3 + 0.5 * k3 / 3, abs=1e-6)
    loss.backward()
    want = torch.tensor([[-1 / 3 + 0.5 * (1 - math.exp(-0.5)) / 3, -1 / 3], [1 / 3, 0.0]])  # dk3/dlogp = 1 - e^d
    assert torch.allclose(logp.grad, want, atol=1e-6)
    assert st["tokens_trained"] == 3 and st["entropy_kept"] == pytest.approx(3.5) and st["kl_ref"] == pytest.approx(k3)
    assert st["logprob_mismatch_mean"] == pytest.approx(0.1) and st["logprob_mismatch_max"] == pytest.approx(0.1)
    assert st["ratio_mean"] == 3 and st["clip_frac"] == 0 and st["loss"] == pytest.approx(loss.item())
    # several mini-batches: the clipped surrogate against old log-probs; token (0, 0) has ratio e^0.5 > 1.2
    old = torch.tensor([[-1.5, -2.0], [-0.5, 0.0]])
    loss, st = microbatch_loss(logp.detach(), mask, adv, 3.0, LossSettings("token_mean", 0.2), sampler, old_logp=old)
    assert loss.item() == pytest.approx((-1.2 - 1.0 + 1.0) / 3, abs=1e-6)
    assert st["clip_frac"] == pytest.approx(1.0) and st["ratio_mean"] == pytest.approx(math.exp(0.5) + 2)
    assert st["approx_kl"] == pytest.approx(-0.5) and st["kl_ref"] == 0 and st["entropy_kept"] == 0


def test_micro_batches_by_token_budget():
    from rlvr_utils.core.update import micro_batches

    lengths = [9, 3, 4, 20, 4, 5]
    order = sorted(range(6), key=lengths.__getitem__)  # 3, 4, 4, 5, 9, 20
    assert micro_batches(order, lengths, 2) == [[1, 2], [4, 5], [0, 3]]
    # samples x the longest <= 12: 3 x 4; 5 alone (2 x 9 > 12), 9 alone; 20 alone, over the budget by itself
    assert micro_batches(order, lengths, 2, tokens=12) == [[1, 2, 4], [5], [0], [3]]
    assert micro_batches(order, lengths, 2, tokens=1000) == [order]


class _Record(torch.optim.Optimizer):
    """An optimizer that only records each step's gradients (lr 0: the policy stays where it is)."""

    def __init__(self, params):
        super().__init__(params, {"lr": 0.0})
        self.grads: list[list[torch.Tensor]] = []

    def step(self, closure=None):
        self.grads.append([p.grad.clone() for g in self.param_groups for p in g["params"]])


def _old_path_grads(policy, ref, rolls, adv, mbs, cfg):
    """The update as it was computed before the memory-lean path: every mini-batch in one padded forward, the full
    log-softmax and entropy over [B, T, V] in fp32, the plain formulas; its gradient per optimizer step."""
    T = cfg.temperature
    out = []
    for mb in mbs:
        policy.zero_grad()
        P = [rolls[i].prompt_ids for i in mb]
        R = [rolls[i].response_ids for i in mb]
        Tm = max(map(len, R))
        lp = torch.zeros(len(mb), Tm)
        mask = torch.zeros(len(mb), Tm, dtype=torch.bool)
        terms = []
        for j, (p, r) in enumerate(zip(P, R)):
            ids = torch.tensor([p + r])
            allp = torch.log_softmax(policy(ids).logits[0, len(p) - 1: -1].float() / T, -1)
            with torch.no_grad():
                refp = torch.log_softmax(ref(ids).logits[0, len(p) - 1: -1].float() / T, -1)  # as the trainer: at T
            tok = torch.tensor(r)
            lpj = allp.gather(-1, tok[:, None]).squeeze(-1)
            ent = -(allp.exp() * allp).sum(-1)
            d = refp.gather(-1, tok[:, None]).squeeze(-1) - lpj
            terms.append((-adv[mb[j]] * lpj).sum() - cfg.entropy_coef * ent.sum() + cfg.kl_coef * (d.exp() - d - 1).sum())
            mask[j, : len(r)] = True
            lp[j, : len(r)] = lpj.detach()
        denom = float(mask.sum())
        (sum(terms) / denom).backward()
        out.append([p.grad.clone() for p in policy.parameters()])
    return out


def test_update_gradients_equal_the_old_full_softmax_path():
    """The memory-lean update (padding removed from the vocabulary projection, the selective log-softmax and
    chunked entropy, micro-batches by a token budget or by count) takes the same gradients as the plain full
    log-softmax over every padded position, mini-batch by mini-batch, to fp32 tolerance."""
    import copy

    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rlvr_utils.core.config import TrainConfig
    from rlvr_utils.core.rollouts import Rollout
    from rlvr_utils.core.update import minibatches, update_policy

    torch.manual_seed(0)
    policy = Qwen2ForCausalLM(Qwen2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))
    ref = copy.deepcopy(policy).requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    ids = lambda n: torch.randint(0, 97, (n,), generator=g).tolist()  # noqa: E731
    rolls = [Rollout(i, 0, ids(2 + i % 3), ids(1 + (5 * i) % 7), [-1.0] * (1 + (5 * i) % 7), "", "length")
             for i in range(8)]
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0])
    keep = torch.ones(8, dtype=torch.bool)
    base = dict(objective="grpo", prompts_per_step=4, rollouts_per_prompt=2, max_tokens=8, precision="fp32",
                temperature=0.8, scale_logits=True, entropy_coef=0.05, kl_coef=0.3, loss_norm="kept",
                mini_batch_size=4, max_grad_norm=1e9)
    cfg = TrainConfig(**base, micro_batch_size=1)
    want = _old_path_grads(policy, ref, rolls, adv, minibatches(cfg, keep, 1), cfg)
    for way in (dict(micro_batch_size=1), dict(micro_batch_size=3), dict(micro_batch_tokens=20)):
        opt = _Record(policy.parameters())
        st = update_policy(TrainConfig(**{**base, **way}), policy, ref, opt,
                           torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0), rolls, adv, keep, 1)
        assert st["optimizer_steps"] == 2 and len(opt.grads) == 2
        for got, exp in zip(opt.grads, want):
            for a, b in zip(got, exp):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
