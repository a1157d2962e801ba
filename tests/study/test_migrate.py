"""The one-off migration of run folders saved before their rows carried what the analysis reads."""

import json
import shutil

import pytest

from rlvr_utils.study.frames import eval_counts, load_run
from rlvr_utils.study.migrate import main as migrate


@pytest.mark.slow
def test_a_run_saved_before_its_compact_records_is_migrated_to_what_the_trainer_writes(tiny_run, tmp_path):
    # a study commits eval rows and metrics, not sample files: the migration of a run saved before the rows carried
    # per-problem counts and distinct answers must give, from its samples, what the trainer writes into them
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
