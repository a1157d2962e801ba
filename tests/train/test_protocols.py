"""Several evaluation settings per run, n = 512 samples a problem, their per-problem counts stored, and the guessing
floor beside pass@k: on a real tiny model."""

import json

import numpy as np
import pytest
from conftest import TINY_RUN, merge

from rlvr_utils.core.config import TrainConfig, parse_sets
from rlvr_utils.core.stats import pass_at_k

pytestmark = pytest.mark.slow

PROTOCOLS = {"t1": {"samples": 8}, "paper": {"samples": 512, "temperature": 0.6, "top_p": 0.95, "problems": 1}}


def test_each_protocol_is_evaluated_with_its_own_settings_and_counts(tmp_path, tiny_model_path):
    from rlvr_utils.train.loop import train

    cfg = TrainConfig.from_dict(parse_sets(merge(*TINY_RUN, f"model={tiny_model_path}", "steps=1", "eval_problems=2",
                                                 "max_tokens=4", "hf_batch_size=256", "track_kl=false",
                                                 f"eval_protocols={json.dumps(PROTOCOLS)}")))
    run = train(cfg, tmp_path / "r", log=lambda _: None)
    for row in run.read_evals():
        assert set(row["protocols"]) == {"t1", "paper"}
        for name, p in row["protocols"].items():
            n, probs = (8, 2) if name == "t1" else (512, 1)
            assert p["n"] == n and list(p["pass_at_k"]) == [str(2**i) for i in range(n.bit_length())]
            assert (p["temperature"], p["top_p"]) == ((1.0, 1.0) if name == "t1" else (0.6, 0.95))
            counts = p["per_problem"]["correct"]
            assert len(counts) == probs and all(0 <= c <= n for c in counts.values())
            for k in p["pass_at_k"]:
                assert p["pass_at_k"][k]["mean"] == pytest.approx(np.mean([pass_at_k(n, c, int(k)) for c in counts.values()]))
        floor = row["guess_floor"]
        assert list(floor) == [str(2**i) for i in range(10)] and 0 <= floor["1"] <= floor["256"] <= 1


def test_a_malformed_protocol_is_one_clear_error():
    with pytest.raises(ValueError, match=r"eval_protocols\['paper'\].samples must be an integer >= 1"):
        TrainConfig(eval_protocols={"paper": {"samples": 0}})
    with pytest.raises(ValueError, match="must be an object with samples"):
        TrainConfig(eval_protocols={"paper": {"n": 512}})


def test_a_protocols_problems_are_a_stratified_subset_of_a_mixed_task(tmp_path, fam_tiny_path):
    """On a task of two parts, a protocol's m problems hold both parts at their shares (the evaluation's problems
    come ordered by part: its first m would be the first part's only)."""
    from rlvr_utils.core.stats import stratified_first
    from rlvr_utils.train.loop import train

    task = "gen:chain?difficulty=2&n=300+gen:chain?difficulty=3&n=100"
    proto = {"paper": {"samples": 4, "temperature": 0.6, "top_p": 0.95, "problems": 8}}
    cfg = TrainConfig.from_dict(parse_sets(merge(*TINY_RUN, f"model={fam_tiny_path}", f"data={task}", "steps=1",
                                                 "eval_problems=16", "max_tokens=4", f"eval_protocols={json.dumps(proto)}")))
    run = train(cfg, tmp_path / "r", log=lambda _: None)
    rows = [json.loads(x) for x in (run.samples / "eval_00000.jsonl").read_text().splitlines()]
    part = dict((r["problem_id"], r["subject"]) for r in rows)  # the main evaluation's 16 problems, in its order
    ids, parts = list(part), list(part.values())
    assert len(ids) == 16 and parts == sorted(parts) and parts.count("chain:3") == 4  # ordered by part, 12:4
    counts = run.read_evals()[0]["protocols"]["paper"]["per_problem"]["correct"]
    assert list(counts) == [ids[i] for i in stratified_first(parts, 8)]
    assert [part[i] for i in counts].count("chain:3") == 2  # both parts, at their shares (6 and 2)


def test_the_controls_pilots_pass_at_256_problems_are_its_ladders_stratified_ones():
    """The controls' RL evaluation (256 problems) gives its n = 512 protocol its stratified first 32: 26 of
    difficulty 2 and 6 of difficulty 3, the first of those the ladder's priors were measured on (64: 51 and 13)."""
    from conftest import REPO

    from rlvr_utils.core.models import load_tokenizer
    from rlvr_utils.core.stats import stratified_first
    from rlvr_utils.data.sources import prepare_data
    from rlvr_utils.grid.profiles import CONTROLS_RL

    rung = REPO / "runs" / "controls-rungs" / "1m-s0-4a2f2bcc" / "t4000000"
    data = prepare_data(TrainConfig(data=CONTROLS_RL["data"], prompt="plain", max_prompt_tokens=64, eval_problems=256),
                        load_tokenizer(str(rung)))
    types = [p.type for p in data.eval]
    prior = json.loads((rung / "prior.json").read_text())["protocols"]["paper"]["per_problem"]["correct"]
    assert [data.eval[i].id for i in stratified_first(types, 64)] == list(prior)
    m = CONTROLS_RL["eval_protocols"]["paper"]["problems"]
    first = [types[i] for i in stratified_first(types, m)]
    assert m == 32 and first.count("column:2") == 26 and first.count("column:3") == 6
