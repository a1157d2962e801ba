"""Study statistics: seed-level CIs use the t distribution; pass@k CIs are never averaged bounds."""

import pandas as pd
import pytest

from rlvr_utils.study.frames import accuracy_tables, pass_at_k_frame
from rlvr_utils.core.stats import seed_ci

def test_pass_at_k_frame_uses_seeds_or_one_runs_bootstrap():
    rows = [dict(run=f"r{s}", model="m", objective="nsr", seed=s, step=st, **{"pass@1": v, "pass@1_lo": v - 0.1,
                                                                            "pass@1_hi": v + 0.1})
            for s, (a, b) in enumerate([(0.2, 0.3), (0.2, 0.5), (0.2, 0.4)]) for st, v in ((0, a), (5, b))]
    rows.append(dict(run="p0", model="m", objective="psr", seed=0, step=0, **{"pass@1": 0.2, "pass@1_lo": 0.1,
                                                                            "pass@1_hi": 0.3}))
    rows.append(dict(run="p0", model="m", objective="psr", seed=0, step=5, **{"pass@1": 0.25, "pass@1_lo": 0.15,
                                                                            "pass@1_hi": 0.4}))
    f = pass_at_k_frame(pd.DataFrame(rows)).set_index("policy")
    nsr = f.loc["nsr"]
    assert nsr["ci"].startswith("seeds (t, n=3)")
    assert nsr["hi"] - nsr["pass@k"] == pytest.approx(seed_ci([0.3, 0.5, 0.4])[2] - 0.4)
    assert f.loc["psr", "ci"] == "problems (bootstrap)" and f.loc["psr", "hi"] == 0.4


def test_accuracy_tables_of_a_protocol_no_run_evaluated_are_empty():
    evals = pd.DataFrame([dict(run="r", model="m", objective="psr", seed=0, step=0, greedy=0.5, greedy_lo=0.4,
                               greedy_hi=0.6)])
    assert accuracy_tables(evals, "t1") == {}  # eval_t1=False: no t1 column (the report once raised KeyError)
    assert list(accuracy_tables(evals, "greedy")) == ["psr"]
