"""Rung specs: parsed once, compared by recipe, placed on the prior axis without their weights."""

import json
import re

import numpy as np
import pytest
from synthetic import _ev

from rlvr_utils.study.frames import load_grid
from rlvr_utils.core.files import append_jsonl
from rlvr_utils.core.runs import RunDir


def test_rung_of_a_committed_run_without_its_rung_on_this_machine(tmp_path):
    from rlvr_utils.priors.recipes import rung_of

    for name, model in (("a", "warm:n=200,seed=1"), ("b", "/somewhere/qwen2.5-0.5b")):
        run = RunDir(tmp_path / name)
        run.path.mkdir()
        run.config.write_text(json.dumps({"model": model, "_meta": {"model_path": "/gone/rung"}}))
        append_jsonl(run.evals, [_ev(0, 0.3)])
    a, b = load_grid(tmp_path)
    assert rung_of(a.config) == (200.0, "n=200 seed=1")  # from the recipe in the run's config: no weights needed
    assert rung_of(b.config)[1] == "rung" and np.isnan(rung_of(b.config)[0])


def test_rungs_that_differ_beyond_their_dose_never_share_a_label(tmp_path):
    # two pretraining seeds of one size and budget are two rungs: under one label the analysis would pool their
    # runs as seeds of one cell (and a vocabulary sweep would give one label two orders)
    from rlvr_utils.study.perseed import run_deltas
    from rlvr_utils.priors.recipes import parse_spec

    specs = ["family:size=1m,tokens=2000000", "family:size=1m,tokens=2000000,seed=1",
             "family:size=1m,tokens=2000000,vocab=1024", "family:size=1m,tokens=2000000,eval_samples=0"]
    assert [parse_spec(s).label for s in specs] == ["1m/2M", "1m/2M seed=1", "1m/2M vocab=1024", "1m/2M"]
    assert parse_spec("warm:n=200,base=/models/qwen2.5-0.5b,engine=hf").label == "n=200 base=qwen2.5-0.5b"
    for i, model in enumerate(specs[:3]):
        run = RunDir(tmp_path / f"r{i}")
        run.path.mkdir()
        run.config.write_text(json.dumps({"model": model, "objective": "nsr", "seed": 0, "eval_samples": 4}))
        append_jsonl(run.evals, [_ev(0, 0.3), _ev(20, 0.4)])
        run.set_status("done")
    d = run_deltas(load_grid(tmp_path))
    assert sorted(d["rung"].unique()) == ["1m/2M", "1m/2M seed=1", "1m/2M vocab=1024"]


@pytest.mark.parametrize("field,value,phrase", [
    ("engine", "vlm", "engine='vlm' not in auto, vllm, hf"), ("extraction", "nope", "extraction='nope' not in"),
    ("prompt", "nope", "prompt='nope' not in"), ("batch_size", 0, "batch_size must be >= 1, got 0"),
    ("n", -1, "n must be >= 0, got -1"), ("epochs", -1, "epochs must be >= 0"),
    ("eval_samples", -1, "eval_samples must be >= 0"), ("eval_problems", 0, "eval_problems must be >= 1"),
    ("lr", 0.0, "lr must be > 0"),
])
def test_a_bad_warm_start_field_fails_where_its_spec_is_parsed(field, value, phrase):
    """Not after the SFT (in every grid cell on the rung, since nothing is cached): when the spec is read."""
    from rlvr_utils.priors.recipes import WarmStart, parse_spec

    with pytest.raises(ValueError, match=re.escape(phrase)) as e:
        parse_spec(f"warm:n=200,{field}={value}")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=re.escape(phrase)):
        WarmStart(**{field: value})
    assert parse_spec("warm:n=0,eval_samples=0,epochs=0").n == 0  # the edges are valid: the base, measured by its loss
