"""What training did to the policy, per rung x objective and between objectives, on synthetic run files."""

import json

import numpy as np
from synthetic import _ev, _grid

from rlvr_utils.study.frames import load_grid
from rlvr_utils.study.dynamics import dynamics_contrast, training_dynamics
from rlvr_utils.study.perseed import run_deltas
from rlvr_utils.core.files import append_jsonl
from rlvr_utils.core.runs import RunDir
from rlvr_utils.study.migrate import migrate_run
from rlvr_utils.study.secondary import dynamics_contrast_markdown, dynamics_markdown


def test_training_dynamics_recover_a_planted_drift(tmp_path, capsys):
    """PSR planted to lower the sampled NLL by 0.5 over training on every rung, NSR to leave it: the table's
    t-interval over seeds finds the one and covers 0 for the other; an unfinished run is left out."""
    rng = np.random.default_rng(3)
    runs = _grid(tmp_path, {}, noise=0.01)
    for r in runs:
        drift = -0.5 if r.config["objective"] == "psr" else 0.0
        append_jsonl(RunDir(r.path).metrics, [{"step": t, "sampled_nll": 1.5 + drift * t / 9 + rng.normal(0, 0.02),
                                               "response_len_mean": 60.0} for t in range(1, 10)])
        for t in range(1, 10):  # 2 prompts x 4 rollouts: PSR's collapse onto one answer from step 5; NSR's keep
            k = 1 if r.config["objective"] == "psr" and t >= 5 else 4  # four (no answer counts as one)
            RunDir(r.path).write_samples(f"step_{t:05d}", [
                {"problem_id": "p0", "sample": i, "extracted": None if i % k == 3 else str(i % k + 10 * q),
                 "completion": f"... {i % k}"} for q in range(2) for i in range(4)])  # p0 drawn twice: two groups
        migrate_run(r.path)  # each metrics row's distinct answers, from these samples
    unfinished = RunDir(tmp_path / "grid" / "n0__psr__s9")
    unfinished.path.mkdir()
    unfinished.config.write_text(json.dumps({"model": str(tmp_path / "rungs" / "n0"), "objective": "psr", "seed": 9}))
    append_jsonl(unfinished.evals, [_ev(0, 0.3)])
    append_jsonl(unfinished.metrics, [{"step": 1, "sampled_nll": 9.0, "response_len_mean": 60.0}])
    runs = load_grid(tmp_path / "grid")
    deltas = run_deltas(runs)
    dyn = training_dynamics(runs, deltas, last=3).set_index(["rung", "objective", "metric"])
    psr, nsr = dyn.loc[("n=0", "psr", "sampled_nll")], dyn.loc[("n=0", "nsr", "sampled_nll")]
    assert psr["seeds"] == 4 and psr["hi"] < -0.3 and psr["lo"] > -0.5, psr.to_dict()  # planted: 1.444 -> 1.056, -0.389
    assert nsr["lo"] < 0 < nsr["hi"]
    md = dynamics_markdown(training_dynamics(runs, deltas, last=3), last=3)
    assert "| n=0 | psr | 4 |" in md and "sampled NLL" in md
    # between objectives, paired by seed: NSR - PSR is the planted 0.444 (steps 7-9) on each rung, and the
    # same on both, so its change across rungs covers 0
    con = dynamics_contrast(runs, deltas, last=3).set_index(["a", "b", "rung"])
    for rung in ("n=0", "n=1000"):
        c = con.loc[("nsr", "psr", rung)]
        assert c["seeds"] == 4 and 0.4 < c["lo"] < 0.444 < c["hi"] < 0.5, c.to_dict()
    change = con.loc[("nsr", "psr", "highest − lowest rung")]
    assert change["lo"] < 0 < change["hi"]
    answers = dyn.loc[("n=0", "psr", "distinct_answers")]
    assert (answers["first"], answers["last"]) == (4.0, 1.0) and dyn.loc[("n=0", "nsr", "distinct_answers"), "last"] == 4.0
    kept = dynamics_contrast(runs, deltas, "distinct_answers").set_index(["a", "b", "rung"])
    assert kept.loc[("nsr", "psr", "n=1000"), "est"] == 3.0
    md = dynamics_contrast_markdown(dynamics_contrast(runs, deltas, last=3), last=3)
    assert "| NSR − PSR | +0.4" in md and "| contrast | n=0 | n=1000 | highest − lowest rung |" in md
    # the CLI's summary is the answer, the tables and this one, from the run files alone
    from rlvr_utils.cli import main

    assert main(["report", str(tmp_path / "grid"), "--summary"]) == 0
    out = capsys.readouterr().out
    # these files hold no per-problem samples: no crossed answer, said so; the t over seeds still answers
    # the unfinished cell is named first as left out, then the answer from the finished ones
    left_out, answer = out.split("\n\n", 1)
    assert left_out.startswith("**Left out, not finished: n0__psr__s9 (pending).**")
    assert answer.startswith("**No primary answer at pass@1 with seeds and problems random: ") and "eval_*.jsonl" in out
    assert ("With a t over seeds (problems held fixed; the rungs' seeds as independent, a Welch interval): "
            "no detectable change in NSR − PSR at pass@4 with the prior") in out
    assert dynamics_markdown(training_dynamics(runs, deltas)) in out
    assert dynamics_contrast_markdown(dynamics_contrast(runs, deltas)) in out
    assert "| NSR − PSR | +3.000" in out  # distinct answers, the CLI's second contrast
    assert "+3.000 (seeds agree)" in out and "[+3.000, +3.000]" not in out  # no zero-width interval
    assert "‡" not in out  # one build everywhere
    # a seed's NSR run on a rebuilt rung n=1000 starts from other rollouts than its PSR run: marked there
    rebuilt = next(r.name for r in runs if r.name.startswith("n1000__nsr__"))
    for r in runs:
        fp = "rebuilt" if r.name == rebuilt else "built"
        (r.path / "config.json").write_text(json.dumps({**r.config, "_meta": {"model_fingerprint": fp}}))
    runs = load_grid(tmp_path / "grid")
    con = dynamics_contrast(runs, run_deltas(runs), last=3).set_index(["a", "b", "rung"])["mixed_builds"]
    assert con[("nsr", "psr", "n=1000")] and con[("nsr", "psr", "highest − lowest rung")] and not con[("nsr", "psr", "n=0")]
    assert "‡" in dynamics_contrast_markdown(dynamics_contrast(runs, run_deltas(runs)))
