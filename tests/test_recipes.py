"""Rung specs: parsed once, compared by recipe, placed on the prior axis without their weights."""

import json

import numpy as np
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
