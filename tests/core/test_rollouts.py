"""The HF engine on SmolLM2: interface, reproducibility, EOS handling; seeds; the engine factory (vLLM: test_vllm.py)."""

import math

import pytest
import torch

from rlvr_utils.core.hardware import dtype_name
from rlvr_utils.core.models import load_policy, load_tokenizer
from rlvr_utils.core.prompts import PromptTooLong, check_budget, render
from rlvr_utils.core.engines import make_engine
from rlvr_utils.core.rollouts import HFEngine, SamplingConfig

pytestmark = pytest.mark.slow  # real models, papermill, vLLM or the grading pool: `make test`, not test-fast


def _policy_logprobs(policy, prompt_ids, response_ids):
    """(log-probs of the response tokens, max |logit|) from one full-sequence forward."""
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logits = policy(ids).logits[0, len(prompt_ids) - 1 : -1].float()
    lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(response_ids)[:, None]).squeeze(-1)
    return lp, logits.abs().max().item()


def logprob_tolerance(precision: str, max_logit: float) -> float:
    """How far two forwards of the same weights may disagree on a log-prob, from the precision used.

    fp32: only kernel order differs (KV-cached decode vs one full forward): measured <= 2e-5, so 1e-3.
    bf16: the logits themselves are bf16, so each is off by up to half a unit in the last place (8
    significant bits: ulp(x) = 2^(floor(log2 x) - 7), 0.25 for logits in [32, 64)); a log-prob is a
    logit minus a log-sum-exp, each off by that much in either forward: 2 ulps of the largest logit.
    """
    if precision == "fp32":
        return 1e-3
    return 2 * 2.0 ** (math.floor(math.log2(max_logit)) - 7)


def test_prompt_template_and_budget(smollm2_path):
    tok = load_tokenizer(smollm2_path)
    ids = render(tok, "What is $1+1$?")
    text = tok.decode(ids)
    assert "\\boxed{}" in text and "What is $1+1$?" in text and text.rstrip().endswith("assistant")
    with pytest.raises(PromptTooLong, match="exceed the model's context"):
        check_budget(ids, max_tokens=8192, context=8192)
    with pytest.raises(ValueError, match="unknown prompt template"):
        render(tok, "x", "nope")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_hf_engine_shapes_seed_and_eos(smollm2_path, precision):
    tok = load_tokenizer(smollm2_path)
    policy = load_policy(smollm2_path)
    eng = HFEngine(policy, tok, batch_size=3, dtype=dtype_name(precision))
    assert (eng.model is policy) == (precision == "fp32")  # fp32 samples from the policy itself, bf16 from a copy
    prompts = [render(tok, "What is 2+3?"), render(tok, "Say hi.")]
    sp = SamplingConfig(temperature=1.0, max_tokens=24, seed=3)
    a = eng.generate(prompts, 2, sp)
    b = eng.generate(prompts, 2, sp)
    assert [(r.prompt_index, r.sample_index) for r in a] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [r.response_ids for r in a] == [r.response_ids for r in b]  # same seed, same samples
    c = eng.generate(prompts, 2, SamplingConfig(temperature=1.0, max_tokens=24, seed=4))
    assert [r.response_ids for r in a] != [r.response_ids for r in c]
    for r in a:
        assert len(r.response_ids) == len(r.logprobs) <= 24
        if r.finish_reason == "stop":
            assert r.response_ids[-1] in eng.eos
        else:
            assert len(r.response_ids) == 24 and not set(r.response_ids) & set(eng.eos)
        # the recorded log-probs are the sampling model's own: one full forward of it gives them again
        lp, max_logit = _policy_logprobs(eng.model, r.prompt_ids, r.response_ids)
        tol = logprob_tolerance(precision, max_logit)
        assert (lp - torch.tensor(r.logprobs)).abs().max().item() <= tol, (precision, tol)
    # min_tokens forbids EOS before it; greedy is deterministic without a seed
    g = eng.generate(prompts[:1], 1, SamplingConfig(temperature=0, max_tokens=12, min_tokens=12, seed=0))[0]
    assert len(g.response_ids) == 12 and not set(g.response_ids[:12]) & set(eng.eos)






def test_make_engine_picks_and_validates(smollm2_path):
    tok = load_tokenizer(smollm2_path)
    with pytest.raises(ValueError, match="unknown engine"):
        make_engine("jax", smollm2_path)
    with pytest.raises(ValueError, match="pass policy"):
        make_engine("hf", smollm2_path)
    policy = load_policy(smollm2_path)
    assert make_engine("hf", smollm2_path, policy=policy, tokenizer=tok).name == "hf"
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0)


def test_every_sample_has_a_seed_of_its_own():
    """A training step's samples, and an evaluation's (its protocols expanded to one request per sample, as
    `evaluate` does), never share a seed; the rule they replace (prompt i's seed + sample j) did."""
    from rlvr_utils.core.rollouts import mix_seed, sample_seeds

    step = [SamplingConfig(1.0, 1.0, 8, 0, mix_seed(7, 3))] * 64
    seeds = [s for row in sample_seeds(step, 8) for s in row]
    assert len(seeds) == len(set(seeds)) == 512
    old = [mix_seed(mix_seed(7, 3), i) + j for i in range(64) for j in range(8)]  # vLLM's n>1: seed + j
    assert len(set(old)) < len(old)
    evaluation = [SamplingConfig(t, 1.0, 8, 0, mix_seed(base, j)) for base, n, t in ((0, 1, 0.0), (1, 32, 1.0), (2, 1, 1.0))
                  for _ in range(256) for j in range(n)]
    seeds = [s for row in sample_seeds(evaluation, 1) for s in row]
    assert len(seeds) == len(set(seeds)) == 256 * 34
