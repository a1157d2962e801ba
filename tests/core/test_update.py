"""Learning is real: the trainer's update on a synthetic verifiable task with a tiny model.

Task: after a one-token prompt, sample 4 tokens from a 12-token vocabulary; the verifier says
correct iff the target token appears. The policy, engine, objectives and update are the package's;
only the verifier is synthetic (MATH is out of reach for a random 2-layer model).
"""

import math

import pytest
import torch

from rlvr_utils.core.config import TrainConfig
from rlvr_utils.core.objectives import advantages, objective_kwargs
from rlvr_utils.core.rollouts import HFEngine, SamplingConfig
from rlvr_utils.core.update import update_policy

pytestmark = pytest.mark.slow  # real models, papermill, vLLM or the grading pool: `make test`, not test-fast

TARGET = 7
VOCAB = 12


def toy(seed=0):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, **{f"t{i}": i for i in range(2, VOCAB)}}
    tk = Tokenizer(WordLevel(vocab, unk_token="<pad>"))
    tk.pre_tokenizer = WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", pad_token="<pad>")
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      eos_token_id=1, pad_token_id=0, bos_token_id=2, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg), tok


def run(objective: str, steps: int = 30, mini_batches: int = 1, lr: float = 3e-3, seed: int = 0):
    policy, tok = toy(seed)
    eng = HFEngine(policy, tok, dtype="float32")
    cfg = TrainConfig(objective=objective, lr=lr, mini_batches=mini_batches, micro_batch_size=8,
                      prompts_per_step=8, rollouts_per_prompt=4, max_tokens=4, precision="fp32", seed=seed)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0)
    prompts = [[2 + (i % (VOCAB - 2))] for i in range(cfg.prompts_per_step)]
    rewards, stats = [], []
    for step in range(1, steps + 1):
        rolls = eng.generate(prompts, cfg.rollouts_per_prompt, SamplingConfig(1.0, 1.0, 4, 4, seed=step))
        correct = torch.tensor([TARGET in r.response_ids for r in rolls])
        groups = torch.tensor([r.prompt_index for r in rolls])
        adv, keep = advantages(objective, correct, groups, **objective_kwargs(cfg))
        stats.append(update_policy(cfg, policy, None, opt, sched, rolls, adv, keep, step))
        rewards.append(correct.float().mean().item())
    return rewards, stats


@pytest.mark.parametrize("objective", ["psr", "nsr", "w_reinforce", "reinforce", "grpo"])
def test_objective_raises_reward(objective):
    rewards, _ = run(objective)
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    print(objective, [round(r, 2) for r in rewards])
    assert last > first + 0.2, (first, last)


def test_clip_active_only_with_several_minibatches():
    _, one = run("reinforce", steps=3, mini_batches=1, lr=5e-2)
    assert all(s["clip_frac"] == 0.0 and s["ratio_mean"] == 1.0 for s in one)
    assert all(s["optimizer_steps"] == 1 for s in one)
    _, four = run("reinforce", steps=3, mini_batches=4, lr=5e-2)
    assert all(s["optimizer_steps"] == 4 for s in four)
    assert max(s["clip_frac"] for s in four) > 0.0


def test_nothing_kept_skips_the_step():
    policy, tok = toy()
    before = [p.detach().clone() for p in policy.parameters()]
    eng = HFEngine(policy, tok, dtype="float32")
    cfg = TrainConfig(objective="psr", prompts_per_step=2, rollouts_per_prompt=2, max_tokens=4,
                      precision="fp32")
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0)
    rolls = eng.generate([[3], [4]], 2, SamplingConfig(1.0, 1.0, 4, 0, 0))
    adv, keep = advantages("psr", torch.zeros(4, dtype=torch.bool), torch.tensor([0, 0, 1, 1]))
    st = update_policy(cfg, policy, None, opt, sched, rolls, adv, keep, 1)
    assert st["optimizer_steps"] == 0 and st["skipped_minibatches"] == 1
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_grpo_uniform_groups_are_not_forwarded():
    policy, tok = toy()
    eng = HFEngine(policy, tok, dtype="float32")
    cfg = TrainConfig(objective="grpo", prompts_per_step=2, rollouts_per_prompt=2, max_tokens=4, precision="fp32")
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0)
    rolls = eng.generate([[3], [4]], 2, SamplingConfig(1.0, 1.0, 4, 0, 0))
    groups = torch.tensor([0, 0, 1, 1])
    adv, keep = advantages("grpo", torch.tensor([True, True, False, False]), groups)
    st = update_policy(cfg, policy, None, opt, sched, rolls, adv, keep, 1)
    assert st["optimizer_steps"] == 0 and st["tokens_trained"] == 0  # every group uniform: zero gradient
    adv, keep = advantages("grpo", torch.tensor([True, False, False, False]), groups)
    st = update_policy(cfg, policy, None, opt, sched, rolls, adv, keep, 2)
    assert st["optimizer_steps"] == 1 and st["tokens_trained"] == sum(len(r.response_ids) for r in rolls[:2])


@pytest.mark.parametrize("kept,size", [(5, 2), (4, 2), (1, 4), (0, 3), (8, 8)])
def test_paper_schedule_takes_ceil_kept_over_size_steps(kept, size):
    """Filter first, then cut the kept samples into mini-batches of `size`: ceil(kept / size) optimizer steps."""
    policy, tok = toy()
    eng = HFEngine(policy, tok, dtype="float32")
    cfg = TrainConfig(objective="psr", prompts_per_step=4, rollouts_per_prompt=2, max_tokens=4, precision="fp32",
                      mini_batch_size=size, lr=1e-2)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0)
    rolls = eng.generate([[3], [4], [5], [6]], 2, SamplingConfig(1.0, 1.0, 4, 4, 0))
    correct = torch.tensor([i < kept for i in range(8)])
    adv, keep = advantages("psr", correct, torch.tensor([r.prompt_index for r in rolls]))
    st = update_policy(cfg, policy, None, opt, sched, rolls, adv, keep, 1)
    assert st["optimizer_steps"] == -(-kept // size) and st["tokens_trained"] == 4 * kept
    assert (st["clip_frac"] == 0.0) == (kept <= size)  # one mini-batch: on-policy, nothing to clip


def test_paper_schedule_weighs_a_partial_last_slice_by_its_size():
    """verl (dp_actor, dynamic batch size) scales each slice's loss by len / mini-batch size: one kept sample
    in slices of 4 moves the policy a quarter as far as the same sample in slices of 1 (plain SGD, no clip)."""
    moved, losses = {}, {}
    for size in (1, 4):
        policy, tok = toy()
        cfg = TrainConfig(objective="psr", prompts_per_step=4, rollouts_per_prompt=2, max_tokens=4, precision="fp32",
                          mini_batch_size=size, max_grad_norm=1e9)
        rolls = HFEngine(policy, tok, dtype="float32").generate([[3], [4], [5], [6]], 2, SamplingConfig(1.0, 1.0, 4, 4, 0))
        adv, keep = advantages("psr", torch.tensor([i == 0 for i in range(8)]), torch.tensor([r.prompt_index for r in rolls]))
        before = [q.detach().clone() for q in policy.parameters()]
        opt = torch.optim.SGD(policy.parameters(), lr=1.0)
        st = update_policy(cfg, policy, None, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0), rolls, adv, keep, 1)
        assert st["optimizer_steps"] == 1
        moved[size] = torch.cat([(q.detach() - b).flatten() for q, b in zip(policy.parameters(), before)])
        losses[size] = st["loss"]
    assert moved[1].abs().max() > 0
    torch.testing.assert_close(moved[4], moved[1] / 4, rtol=1e-4, atol=1e-7)
    assert losses[4] == pytest.approx(losses[1] / 4, rel=1e-5)


def test_gradients_are_freed_when_the_update_returns():
    """4 bytes a parameter: left live, they would sit on the card through the weight sync and the next sampling."""
    policy, tok = toy()
    eng = HFEngine(policy, tok, dtype="float32")
    cfg = TrainConfig(objective="reinforce", lr=1e-3, micro_batch_size=8, prompts_per_step=8, rollouts_per_prompt=4,
                      max_tokens=4, precision="fp32", mini_batches=2)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0)
    rolls = eng.generate([[2 + i] for i in range(8)], 4, SamplingConfig(1.0, 1.0, 4, 4, seed=1))
    correct = torch.tensor([TARGET in r.response_ids for r in rolls])
    adv, keep = advantages("reinforce", correct, torch.tensor([r.prompt_index for r in rolls]))
    stats = update_policy(cfg, policy, None, opt, sched, rolls, adv, keep, 1)
    assert stats["optimizer_steps"] == 2
    assert all(p.grad is None for p in policy.parameters())
    # the policy's own log-probs against the engine's, before the first step: the same model, ~0
    assert stats["logprob_mismatch_max"] < 1e-4 and stats["tokens_trained"] > 0


def test_truncated_importance_sampling_reweights_by_the_engine_gap():
    from rlvr_utils.core.losses import tis_weights

    own = torch.log(torch.tensor([[0.5, 0.2], [0.9, 0.1]]))
    engine = torch.log(torch.tensor([[0.25, 0.2], [0.3, 0.2]]))
    assert torch.allclose(tis_weights(own, engine, cap=2.0), torch.tensor([[2.0, 1.0], [2.0, 0.5]]))
    policy, tok = toy()
    eng = HFEngine(policy, tok, dtype="float32")
    rolls = eng.generate([[2 + i] for i in range(8)], 4, SamplingConfig(1.0, 1.0, 4, 4, seed=1))
    for r in rolls:  # an engine that sampled from another precision: its log-probs off by a constant
        r.logprobs = [x - 0.1 for x in r.logprobs]
    correct = torch.tensor([TARGET in r.response_ids for r in rolls])
    adv, keep = advantages("w_reinforce", correct, torch.tensor([r.prompt_index for r in rolls]), lam=0.1)
    for cap, weight in ((0.0, 0.0), (2.0, math.exp(0.1)), (1.05, 1.05)):
        cfg = TrainConfig(objective="w_reinforce", lr=1e-3, micro_batch_size=8, prompts_per_step=8,
                          rollouts_per_prompt=4, max_tokens=4, precision="fp32", tis_cap=cap)
        opt = torch.optim.AdamW(policy.parameters(), lr=0.0)
        stats = update_policy(cfg, policy, None, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0), rolls, adv,
                              keep, 1)
        assert stats["logprob_mismatch_mean"] == pytest.approx(0.1, abs=1e-4)
        assert stats["tis_weight_mean"] == pytest.approx(weight, abs=1e-4)
