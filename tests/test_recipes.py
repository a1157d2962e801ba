"""Rung specs: parsed once, compared by recipe, placed on the prior axis without their weights."""

import json
import re

import numpy as np
import pytest
from synthetic import _ev

from rlvr_utils.analysis import load_grid
from rlvr_utils.files import append_jsonl
from rlvr_utils.runs import RunDir


def test_rung_of_a_committed_run_without_its_rung_on_this_machine(tmp_path):
    from rlvr_utils.effects import rung_of

    for name, model in (("a", "warm:n=200,seed=1"), ("b", "/somewhere/qwen2.5-0.5b")):
        run = RunDir(tmp_path / name)
        run.path.mkdir()
        run.config.write_text(json.dumps({"model": model, "_meta": {"model_path": "/gone/rung"}}))
        append_jsonl(run.evals, [_ev(0, 0.3)])
    a, b = load_grid(tmp_path)
    assert rung_of(a) == (200.0, "n=200")  # from the recipe in the run's config: no weights needed
    assert rung_of(b)[1] == "rung" and np.isnan(rung_of(b)[0])


@pytest.mark.parametrize("field,value,phrase", [
    ("engine", "vlm", "engine='vlm' not in auto, vllm, hf"), ("extraction", "nope", "extraction='nope' not in"),
    ("prompt", "nope", "prompt='nope' not in"), ("batch_size", 0, "batch_size must be >= 1, got 0"),
    ("n", -1, "n must be >= 0, got -1"), ("epochs", -1, "epochs must be >= 0"),
    ("eval_samples", -1, "eval_samples must be >= 0"), ("eval_problems", 0, "eval_problems must be >= 1"),
    ("lr", 0.0, "lr must be > 0"),
])
def test_a_bad_warm_start_field_fails_where_its_spec_is_parsed(field, value, phrase):
    """Not after the SFT (in every grid cell on the rung, since nothing is cached): when the spec is read."""
    from rlvr_utils.recipes import WarmStart, parse_spec

    with pytest.raises(ValueError, match=re.escape(phrase)) as e:
        parse_spec(f"warm:n=200,{field}={value}")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=re.escape(phrase)):
        WarmStart(**{field: value})
    assert parse_spec("warm:n=0,eval_samples=0,epochs=0").n == 0  # the edges are valid: the base, measured by its loss
