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
