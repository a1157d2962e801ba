"""Study statistics: seed-level CIs use the t distribution; pass@k CIs are never averaged bounds."""

import json
import shutil

import pandas as pd
import pytest

from rlvr_utils.study.frames import accuracy_tables, eval_counts, load_run, pass_at_k_frame
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


@pytest.mark.slow
def test_a_run_saved_before_its_compact_records_is_migrated_to_what_the_trainer_writes(tiny_run, tmp_path):
    # a study commits eval rows and metrics, not sample files: the migration of a run saved before the rows carried
    # per-problem counts and distinct answers must give, from its samples, what the trainer writes into them
    from rlvr_utils.study.migrate import main as migrate

    from_rows = eval_counts(tiny_run)
    old = tmp_path / "as-saved-before-per-problem"  # the same run, its rows without the counts and the diversity
    shutil.copytree(tiny_run, old)
    for name, drop in (("eval.jsonl", {"per_problem"}), ("metrics.jsonl", {"distinct_answers", "distinct_responses"})):
        rows = [json.loads(x) for x in (old / name).read_text().splitlines()]
        (old / name).write_text("".join(json.dumps({k: v for k, v in r.items() if k not in drop}) + "\n" for r in rows))
    assert eval_counts(old).empty and "distinct_answers" not in load_run(old).metrics  # nothing read from samples
    assert migrate([str(tmp_path)]) == 0
    from_samples = eval_counts(old)
    assert len(from_rows) == len(from_samples) > 0
    assert from_rows.sort_index().astype(int).equals(from_samples.sort_index().astype(int))
    metrics = load_run(tiny_run).metrics.set_index("step")
    div = load_run(old).metrics.set_index("step")
    assert metrics["distinct_answers"].to_dict() == pytest.approx(div["distinct_answers"].to_dict())
    assert metrics["distinct_responses"].to_dict() == pytest.approx(div["distinct_responses"].to_dict())
