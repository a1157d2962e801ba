"""The static engine (core/sampler.py) samples the policy's own distribution: its log-probs are the policy's
teacher-forced ones, its draws follow softmax(logits / T) within the top-p nucleus, a sample depends on its seed
only, and on a committed family rung it solves problems as often as the HF engine does."""

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from transformers import LlamaConfig, LlamaForCausalLM

from rlvr_utils.core.models import load_policy, load_tokenizer
from rlvr_utils.core.engines import make_engine, resolve_engine
from rlvr_utils.core.rollouts import HFEngine, SamplingConfig
from rlvr_utils.core.picking import uniforms
from rlvr_utils.core import sampler
from rlvr_utils.core.sampler import StaticEngine, unsupported

RUNG = Path(__file__).resolve().parents[2] / "runs" / "family-rungs" / "1m-s0-09cd6630" / "t4000000"  # pass@1 ~0.48


@pytest.fixture(autouse=True)
def one_thread():
    """Models this small gain nothing from a second thread, and on a busy machine lose much waiting for it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(str(RUNG))  # the family's BPE (289 tokens): a real tokenizer for a random model


def tiny_llama(tok, seed: int = 0, kv_heads: int = 2) -> LlamaForCausalLM:
    """A random Llama with grouped-query attention; a wide init makes its next-token distributions peaked, so
    its samples end on EOS at varied lengths (the compaction path) and top-p cuts real tails."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=kv_heads, head_dim=16, initializer_range=0.3,
                      tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval()


def prompts_of(tok, n: int, seed: int = 0) -> list[list[int]]:
    """Prompts of different lengths (the left-padding path), no special tokens."""
    g = np.random.default_rng(seed)
    return [[int(x) for x in g.integers(2, len(tok), size=int(g.integers(3, 12)))] for _ in range(n)]


def teacher_forced(policy, prompt: list[int], response: list[int]) -> torch.Tensor:
    """The policy's logits at each response position, from one full forward."""
    with torch.no_grad():
        return policy(torch.tensor([prompt + response])).logits[0, len(prompt) - 1 : -1].float()


@pytest.mark.parametrize("own_loop", [sampler.OWN_LOOP, 0], ids=["sdpa-or-loop-by-rows", "loop-always"])
def test_logprobs_are_the_policys_teacher_forced_ones(tok, own_loop, monkeypatch):
    """Either way of attending to a row's own tokens (SDPA's kernel with few rows, a loop over the steps with
    many: the suite's batches are small, so the loop is forced in the second case) gives the policy's log-probs."""
    monkeypatch.setattr(sampler, "OWN_LOOP", own_loop)
    policy = tiny_llama(tok)
    eng = StaticEngine(policy, tok, batch_size=16)  # several chunks
    prompts = prompts_of(tok, 6)
    sps = [SamplingConfig(1.0, 1.0, 20, 0, 1), SamplingConfig(0.7, 0.9, 20, 3, 2), SamplingConfig(0.0, 1.0, 9, 0, 3)] * 2
    rolls = eng.generate(prompts, 4, sps)
    assert [(r.prompt_index, r.sample_index) for r in rolls] == [(i, j) for i in range(6) for j in range(4)]
    assert {r.finish_reason for r in rolls} == {"stop", "length"}
    for r in rolls:
        sp = sps[r.prompt_index]
        assert r.prompt_ids == prompts[r.prompt_index] and len(r.response_ids) == len(r.logprobs) <= sp.max_tokens
        assert (r.finish_reason == "stop") == (r.response_ids[-1] in eng.eos)
        assert not set(r.response_ids[:-1]) & set(eng.eos) and not set(r.response_ids[: sp.min_tokens]) & set(eng.eos)
        logits = teacher_forced(policy, r.prompt_ids, r.response_ids)
        lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(r.response_ids)[:, None]).squeeze(-1)
        # fp32: only the order of the kernels' sums differs from one full forward (measured <= 5e-6)
        assert (lp - torch.tensor(r.logprobs)).abs().max().item() < 1e-4
        if sp.temperature == 0:
            assert r.response_ids == logits.argmax(-1).tolist()[: len(r.response_ids)]
        assert r.text == tok.decode(r.response_ids, skip_special_tokens=True)


def test_bf16_samples_from_a_bf16_copy_within_its_precision(tok):
    policy = tiny_llama(tok)
    eng = StaticEngine(policy, tok, dtype="bfloat16")
    ref = tiny_llama(tok).to(torch.bfloat16)
    for r in eng.generate(prompts_of(tok, 3), 3, SamplingConfig(1.0, 1.0, 16, 0, 5)):
        logits = teacher_forced(ref, r.prompt_ids, r.response_ids)
        lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(r.response_ids)[:, None]).squeeze(-1)
        # two bf16 forwards that round their intermediates differently (fused products, residual adds inside the
        # GEMMs): measured <= 4.1 units in the last place (8 bits) of the largest logit on this random model, <= 1.9
        # on the 1m rung; 6 allowed
        tol = 6 * 2.0 ** (np.floor(np.log2(logits.abs().max().item())) - 7)
        assert (lp - torch.tensor(r.logprobs)).abs().max().item() <= tol


def test_a_sample_depends_on_its_seed_only(tok):
    """Same seeds, same samples, whatever the chunk size and whatever else shares the batch; other seeds, others."""
    policy = tiny_llama(tok)
    prompts = prompts_of(tok, 5)
    sp = SamplingConfig(1.0, 0.95, 24, 0, 11)
    a = StaticEngine(policy, tok).generate(prompts, 3, sp)
    b = StaticEngine(policy, tok, batch_size=4).generate(prompts, 3, sp)
    assert [r.response_ids for r in a] == [r.response_ids for r in b]
    # prompt 2 alone, with prompt 2's seed: sample j of prompt i has the seed sample_seeds gives it (i * n + j)
    mixed = [sp] * 5
    alone = StaticEngine(policy, tok).generate([prompts[2]] * 3, 1, [SamplingConfig(1.0, 0.95, 24, 0, 11)] * 3)
    seeds_ok = StaticEngine(policy, tok).sample(prompts, 3, mixed)
    assert [r.response_ids for r in a[6:9]] == [
        seeds_ok.tokens[k, : seeds_ok.lengths[k]].tolist() for k in range(6, 9)]
    assert [r.response_ids for r in alone] != [r.response_ids for r in a[6:9]]  # other seeds (i * n + j with i = 0)
    c = StaticEngine(policy, tok).generate(prompts, 3, SamplingConfig(1.0, 0.95, 24, 0, 12))
    assert [r.response_ids for r in a] != [r.response_ids for r in c]


def test_with_two_threads_each_takes_chunks_of_its_own_and_the_samples_are_the_same(tok):
    """A chunk of rows per thread (the engine's parallelism) changes no sample, and no log-prob beyond fp32 rounding
    (a matrix product's result depends on its rows' blocking), and leaves torch's thread count as it found it."""
    import threading

    from rlvr_utils.core import sampler

    policy = tiny_llama(tok)
    prompts, sp = prompts_of(tok, 6), SamplingConfig(1.0, 0.95, 24, 0, 5)
    one = StaticEngine(policy, tok).sample(prompts, 4, [sp] * 6)
    seen, run = set(), sampler.decode

    def spy(*a, **k):
        seen.add((threading.get_ident(), torch.get_num_threads()))
        return run(*a, **k)

    torch.set_num_threads(2)
    try:
        sampler.decode = spy
        two = StaticEngine(policy, tok).sample(prompts, 4, [sp] * 6)
        assert torch.get_num_threads() == 2
    finally:
        sampler.decode = run
    assert len({t for t, _ in seen}) == 2 and {n for _, n in seen} == {1}  # two threads, one core each
    assert torch.equal(one.tokens, two.tokens) and torch.equal(one.lengths, two.lengths)
    assert torch.equal(one.stopped, two.stopped) and torch.allclose(one.logprobs, two.logprobs, rtol=0, atol=1e-5)


def test_the_uniforms_are_uniform_and_distinct_per_seed_and_step():
    u = torch.stack([uniforms(torch.arange(4000), step) for step in range(3)])
    assert u.min() >= 0 and u.max() < 1 and len(set(u.flatten().tolist())) > 11_900
    assert stats.kstest(u.flatten().numpy(), "uniform").pvalue > 1e-3


def test_draws_follow_the_tempered_nucleus_distribution(tok):
    """Randomised probability integral transform: if each token is drawn from p (softmax(logits / T), masked
    before min_tokens, cut to the top-p nucleus and renormalised), F(tok-) + v p(tok) with v ~ U(0, 1) is
    uniform on [0, 1), step after step. Power: ~5,000 values, a one-sample KS test at alpha 0.001 rejects any
    sup-distance of the values' CDF from the uniform's above 1.95 / sqrt(5000) = 0.028. The T = 0.7 rows' draws
    read as if from T = 1 without top-p (a sampler that ignored both) are rejected at the same alpha (last line)."""
    policy = tiny_llama(tok, seed=1)
    eng = StaticEngine(policy, tok)
    prompts = prompts_of(tok, 16, seed=1)
    sps = [SamplingConfig(0.7, 0.8, 24, 2, 7), SamplingConfig(1.0, 1.0, 24, 0, 8)] * 8
    g = np.random.default_rng(0)
    pit, wrong, in_nucleus = [], [], True
    for r in eng.generate(prompts, 16, sps):
        sp = sps[r.prompt_index]
        logits = teacher_forced(policy, r.prompt_ids, r.response_ids)
        for k, t in enumerate(r.response_ids):
            z = logits[k].clone()
            if k < sp.min_tokens:
                z[eng.eos] = float("-inf")
            p = torch.softmax(z / sp.temperature, -1).double()
            if sp.top_p < 1:
                ps, order = p.sort(descending=True)
                keep = ps.cumsum(0) - ps < sp.top_p
                p = torch.zeros_like(p).scatter(0, order[keep], ps[keep])
                p /= p.sum()
                in_nucleus &= bool(p[t] > 0)
            v = g.random()
            pit.append(float(p[:t].sum() + v * p[t]))
            if sp.temperature != 1:
                p1 = torch.softmax(z, -1).double()
                wrong.append(float(p1[:t].sum() + v * p1[t]))
    assert in_nucleus and len(pit) > 4000
    assert stats.kstest(pit, "uniform").pvalue > 1e-3
    assert stats.kstest(wrong, "uniform").pvalue < 1e-3


def test_in_sync_with_the_policy_by_construction(tok):
    policy = tiny_llama(tok)
    eng = StaticEngine(policy, tok)
    sp = SamplingConfig(1.0, 1.0, 12, 0, 3)
    before = eng.generate(prompts_of(tok, 2), 2, sp)
    with torch.no_grad():
        for p in policy.parameters():
            p.mul_(1.5)  # an optimizer step, in place: no sync call
    after = eng.generate(prompts_of(tok, 2), 2, sp)
    assert [r.response_ids for r in after] != [r.response_ids for r in before]
    for r in after:
        lp = torch.log_softmax(teacher_forced(policy, r.prompt_ids, r.response_ids), -1)
        lp = lp.gather(-1, torch.tensor(r.response_ids)[:, None]).squeeze(-1)
        assert (lp - torch.tensor(r.logprobs)).abs().max().item() < 1e-4


def test_auto_picks_static_for_small_llamas_on_a_cpu(tok):
    small = tiny_llama(tok).config
    assert resolve_engine("auto", small, "cpu") == "static" and resolve_engine("static") == "static"
    assert resolve_engine("auto", small, "cuda") != "static"
    big = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30)
    assert resolve_engine("auto", big, "cpu") != "static"  # SmolLM2-135M's shape: vLLM or hf, as before
    from transformers import Qwen2Config

    assert "model_type 'qwen2'" in unsupported(Qwen2Config())
    with pytest.raises(ValueError, match="Llama decoders only"):
        StaticEngine(type("M", (), {"config": Qwen2Config()})(), tok)
    assert make_engine("auto", str(RUNG), policy=tiny_llama(tok), tokenizer=tok).name == "static"


@pytest.mark.slow
def test_pass_rates_agree_with_the_hf_engine_on_a_family_rung():
    """Both engines sample the committed 1m rung (4M tokens, pass@1 ~0.48) on the same 24 held-out problems,
    96 samples each at T = 1; answers graded as integers. Under 'same distribution' the per-problem differences
    in pass rate are noise of variance p(1-p) * 2/96 each. Two tests at alpha 0.001 (seeded: deterministic on one
    CPU kind): the mean difference (z; power 0.8 against a shift of 0.061 in every problem's pass rate at p = 0.5)
    and the sum of squared per-problem z (chi-square, 24 df; power 0.8 against a difference of 0.09 in each)."""
    from rlvr_utils.core.config import TrainConfig
    from rlvr_utils.core.grading import extract_answer
    from rlvr_utils.data.sources import prepare_data

    tok = load_tokenizer(str(RUNG))
    data = prepare_data(TrainConfig(data="gen:chain?difficulty=2&n=4000", prompt="plain", max_prompt_tokens=64,
                                    eval_problems=24), tok)
    policy = load_policy(str(RUNG)).eval()
    n, sp = 96, SamplingConfig(1.0, 1.0, 64, 0, 2026)
    rates = []
    for eng in (StaticEngine(policy, tok), HFEngine(policy, tok, batch_size=256)):
        rolls = eng.generate(data.eval_prompts, n, sp)
        ok = [extract_answer(r.text) == data.eval[r.prompt_index].gold.strip() for r in rolls]
        rates.append(np.array(ok, dtype=float).reshape(-1, n).mean(1))
    s, h = rates
    pooled = (s + h) / 2
    var = np.clip(pooled * (1 - pooled), 1 / n, None) * 2 / n  # a problem both solve always or never: var of 1/n
    z_mean = (s - h).mean() / np.sqrt(var.sum()) * len(s)
    chi2 = float(((s - h) ** 2 / var).sum())
    assert 0.2 < pooled.mean() < 0.8  # problems with room to differ either way
    assert abs(z_mean) < stats.norm.isf(0.0005), (s.mean(), h.mean())
    assert chi2 < stats.chi2.isf(0.001, len(s)), (s, h)
