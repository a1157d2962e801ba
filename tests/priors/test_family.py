"""The model family: its tokenizer round-trips the tasks' text, a rung is a plain HF model folder (vLLM loads it
too: tests/test_vllm.py), more pretraining lowers held-out loss, budgets nest, and a build is deterministic."""

import hashlib
from collections import Counter
from dataclasses import fields, replace
from pathlib import Path

import pytest

from rlvr_utils.priors.family import build_rung, build_rungs, corpus, model_config, tokenizer
from rlvr_utils.priors.measure import by_subject, read_prior
from rlvr_utils.priors.recipes import FAMILY_SIZES, FamilyRung, family_params, parse_spec, rung_of
from rlvr_utils.data.tasks import load_task

pytestmark = pytest.mark.slow  # pretrains tiny models

# a family small enough to pretrain in seconds: 1m parameters, a 300-token vocabulary, ~10 steps a budget
TINY = FamilyRung(size="1m", tokens=12_000, corpus="chain:1=200+2=400+3=400", task="gen:chain?difficulty=3&n=400",
                  vocab=300, batch=16, warmup=5, lr=3e-3, eval_problems=8, eval_samples=2, max_tokens=48)


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("RLVR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def sha1(folder: Path) -> str:
    return hashlib.sha1((folder / "model.safetensors").read_bytes()).hexdigest()


def test_sizes_follow_one_shape_rule_and_their_counts_are_exact():
    for size, (hidden, layers) in FAMILY_SIZES.items():
        cfg = model_config(size, 512, 0, 1)
        assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.head_dim) == (hidden, layers, 64)
        assert cfg.intermediate_size % 32 == 0 and 2.6 < cfg.intermediate_size / hidden < 2.9
        from transformers import LlamaForCausalLM

        assert sum(p.numel() for p in LlamaForCausalLM(cfg).parameters()) == family_params(size, 512), size


def test_the_tokenizer_round_trips_every_problem_and_solution(cache):
    examples = corpus(TINY)
    tok = tokenizer(TINY, examples, log=lambda _: None)
    assert len(tok) <= TINY.vocab  # merges stop once every word of the tasks' text is one token
    texts = [x for p in examples + load_task(TINY.task, "train") + load_task(TINY.task, "test")
             for x in (p.problem, p.solution)]
    for text in texts:
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert max(len(tok(x)["input_ids"]) for x in texts) < len(max(texts, key=len))  # BPE shortens the text
    held = {p.problem for p in load_task(TINY.task, "test")}
    assert not held & {p.problem for p in examples}  # the RL task's test problems are not pretrained on


def test_a_mixed_tasks_test_problems_are_held_out_of_the_corpus_part_by_part():
    r = replace(TINY, corpus="column:2=300+3=100", task="gen:column?difficulty=2&n=200+gen:column?difficulty=3&n=40")
    examples = corpus(r)
    assert sorted(p.level for p in examples).count("Difficulty 3") == 100 and len(examples) == 400
    held = {p.problem for p in load_task(r.task, "test")}
    assert {p.level for p in load_task(r.task, "test")} == {"Difficulty 2", "Difficulty 3"}
    assert not held & {p.problem for p in examples}
    with pytest.raises(ValueError, match="same problems"):
        replace(TINY, task="gen:column+gen:column")


def test_a_mixed_tasks_prior_splits_by_part_and_the_parts_make_up_the_whole(cache):
    r = replace(TINY, task="gen:chain?difficulty=2&n=200+gen:chain?difficulty=3&n=40", eval_samples=4,
                eval_also="paper")
    prior = read_prior(build_rung(r, log=lambda _: None))
    parts = by_subject(prior, ks=(1, 4))
    assert set(parts) == {"main", "paper"} and all(set(v) == {"chain:2", "chain:3"} for v in parts.values())
    sizes = Counter(p.type for p in load_task(r.task, "test") if p.id in prior["per_problem"]["correct"])
    assert sizes == {"chain:2": 7, "chain:3": 1}  # 8 problems, parts at their share (50:10)
    for name, whole in (("main", prior), ("paper", prior["protocols"]["paper"])):
        for k in (1, 4):  # the parts' means, weighted by their problems, are the prior's own pass@k
            mixed = sum(sizes[s] * parts[name][s][k] for s in sizes) / 8
            assert mixed == pytest.approx(whole["pass_at_k"][str(k)]["mean"], abs=1e-9)


def test_a_spec_is_a_model_name_and_orders_the_ladder():
    spec = "family:size=3m,tokens=2000000,seed=1,corpus=chain:2=100+3=200"
    r = parse_spec(spec)
    assert r == replace(FamilyRung(), size="3m", tokens=2_000_000, seed=1, corpus="chain:2=100+3=200")
    assert rung_of({"model": spec}) == (r.order, "3m/2M seed=1 corpus=chain:2=100+3=200")  # beyond the dose: named
    small, big = parse_spec("family:size=1m,tokens=500000"), parse_spec("family:size=7m,tokens=2000000")
    assert small.order < r.order < big.order  # pretraining compute: 6 x params x tokens
    assert replace(r, eval_samples=4).key() == r.key() and replace(r, lr=1e-4).key() != r.key()  # eval fields: not weights
    with pytest.raises(ValueError, match="family size"):
        parse_spec("family:size=9m")


def test_more_pretraining_lowers_held_out_loss_and_budgets_nest(cache, monkeypatch):
    short = build_rung(TINY, log=lambda _: None)
    longer = build_rung(replace(TINY, tokens=48_000), log=lambda _: None)  # resumes from the 12k checkpoint
    p0, p1 = read_prior(short), read_prior(longer)
    assert p1["heldout_loss"] < p0["heldout_loss"] - 0.3, (p0["heldout_loss"], p1["heldout_loss"])
    assert p1["tokens_seen"] >= 48_000 and set(p1["pass_at_k"]) == {"1", "2"} and p1["sampled_nll_t1"] > 0
    assert p1["measured_with"]["eval_samples"] == 2 and p1["cpu"]
    for f in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "family.json"):
        assert (longer / f).exists(), f
    sampled = (short / "prior.json").read_bytes()  # a smoke's loss-only request never replaces a sampled prior
    assert build_rung(replace(TINY, eval_samples=0), log=lambda _: None) == short
    assert (short / "prior.json").read_bytes() == sampled
    # the longer budget, pretrained straight through in another cache, has the same bits
    monkeypatch.setenv("RLVR_CACHE", str(cache.parent / "other"))
    straight = build_rung(replace(TINY, tokens=48_000), log=lambda _: None)
    assert sha1(straight) == sha1(longer)


def test_a_ladder_pretrains_in_turn_and_measures_its_priors_side_by_side(cache, monkeypatch):
    """`rlvr family --builds`: each build as `build_rung` makes it (same bits), each prior measured on its own core."""
    builds = [replace(TINY, seed=1), replace(TINY, seed=2)]
    outs = build_rungs(builds, jobs=2, log=lambda _: None)
    for r, out in zip(builds, outs):
        prior = read_prior(out)
        assert prior["measured_with"]["eval_samples"] == 2 and set(prior["pass_at_k"]) == {"1", "2"}, r
        assert out == cache / "family" / r.key()
    assert sha1(outs[0]) != sha1(outs[1])  # two builds, not one twice
    first = [(o / "prior.json").read_bytes() for o in outs]
    assert build_rungs(builds, jobs=2, log=lambda _: None) == outs  # measured already: nothing is redone
    assert [(o / "prior.json").read_bytes() for o in outs] == first
    monkeypatch.setenv("RLVR_CACHE", str(cache.parent / "alone"))
    assert sha1(build_rung(replace(TINY, seed=1), log=lambda _: None)) == sha1(outs[0])


def test_a_protocol_asked_for_later_is_measured_beside_the_prior_without_remeasuring_it(cache):
    """`eval_also`: the paper's protocol added to a measured build keeps its T = 1 prior as it was (a ladder's
    builds gain the protocol its ceiling is judged under) and measures n samples a problem at T = 0.6, top-p 0.95."""
    out = build_rung(TINY, log=lambda _: None)
    before = read_prior(out)
    also = replace(TINY, eval_samples=2, eval_also="paper")
    assert build_rung(also, log=lambda _: None) == out
    after = read_prior(out)
    assert {k: after[k] for k in before} == before  # the main measurement, untouched
    paper = after["protocols"]["paper"]
    assert (paper["n"], paper["temperature"], paper["top_p"]) == (2, 0.6, 0.95)
    counts = paper["per_problem"]["correct"]
    assert len(counts) == TINY.eval_problems and all(0 <= c <= 2 for c in counts.values())
    assert paper["pass_at_k"]["1"]["mean"] == pytest.approx(sum(counts.values()) / (2 * len(counts)))
    assert paper["measured_with"] == also.measured_with() and paper["cpu"] and paper["seconds"] > 0
    saved = (out / "prior.json").read_bytes()
    assert build_rung(also, log=lambda _: None) == out and (out / "prior.json").read_bytes() == saved  # nothing redone
    with pytest.raises(ValueError, match="eval_also: unknown sampling protocol 'papr'; known: t1, paper"):
        replace(TINY, eval_also="papr")
    with pytest.raises(ValueError, match="eval_samples: set it >= 1"):
        replace(TINY, eval_samples=0, eval_also="paper")


def test_a_rung_rebuilds_bit_for_bit(cache, monkeypatch):
    first = sha1(build_rung(TINY, log=lambda _: None))
    monkeypatch.setenv("RLVR_CACHE", str(cache.parent / "again"))
    assert sha1(build_rung(TINY, log=lambda _: None)) == first


def test_a_rung_trains_with_the_plain_prompt(cache, tmp_path):
    from rlvr_utils.core.config import TrainConfig
    from rlvr_utils.core.runs import RunDir
    from rlvr_utils.train.loop import train

    spec = "family:" + ",".join(f"{f.name}={getattr(TINY, f.name)}" for f in fields(TINY) if f.name != "engine")
    cfg = TrainConfig(model=spec, data=TINY.task, prompt="plain", extraction="boxed", steps=2, prompts_per_step=4,
                      rollouts_per_prompt=4, max_tokens=48, max_prompt_tokens=64, max_model_len=512, eval_problems=4,
                      eval_samples=2, eval_every=0, engine="hf", grade_workers=1, lr=1e-4, precision="fp32")
    run = RunDir(train(cfg, tmp_path / "run", log=lambda _: None).path)
    rows = run.read_metrics()
    assert [r["step"] for r in rows] == [1, 2] and rows[0]["kl_to_init"] == pytest.approx(0, abs=1e-6)
    assert rows[1]["kl_to_init"] > 0 and rows[1]["samples_trained_total"] >= rows[0]["samples_trained_total"]
    assert rows[0]["logprob_mismatch_max"] < 1e-4  # the HF engine in fp32 samples from the policy itself
    assert run.saved_config()["_meta"]["model_fingerprint"]




