"""The prior study's analysis on synthetic run files: a planted effect is recovered, planted noise is not."""

import json

import numpy as np
import pytest

from synthetic import _ev, _grid, _recs, write_eval

from rlvr_utils.study.frames import load_grid
from rlvr_utils.study.perseed import (contrast_table, noise_floor, perseed_effect_table, perseed_interaction, problem_delta,
                                      run_deltas)
from rlvr_utils.core.files import append_jsonl
from rlvr_utils.core.runs import RunDir
from rlvr_utils.study.secondary import answer, summary_markdown






def test_planted_interaction_is_recovered(tmp_path):
    deltas = run_deltas(_grid(tmp_path, {(1000, "nsr"): 0.2}, noise=0.01))
    eff = perseed_effect_table(deltas).set_index(["rung", "objective", "k"])
    nsr_hi = eff.loc[("n=1000", "nsr", 4)]
    assert nsr_hi["seeds"] == 4 and nsr_hi["lo"] > 0.15 and nsr_hi["hi"] < 0.25
    assert eff.loc[("n=0", "psr", 4), "lo"] < 0 < eff.loc[("n=0", "psr", 4), "hi"]
    it = perseed_interaction(deltas, k=4)
    assert it["lo"] > 0 and abs(it["did"] - 0.2) < 0.03 and it["rungs"] == (0.0, 1000.0)
    assert answer(deltas, 4).startswith("NSR − PSR at pass@4 rises with the prior, from ")
    assert "rung n=0 vs n=1000)" in answer(deltas, 4)  # rungs by their labels, not their compute orders
    md = summary_markdown(deltas, 4)
    assert md.startswith("**NSR − PSR at pass@4 rises")
    nsr_row = next(line for line in md.splitlines() if line.startswith("| n=1000 | nsr | 4 |"))
    lo, hi = (float(x) for x in nsr_row.split("|")[5].split("[")[1].rstrip("] ").split(","))
    assert 0.15 < lo < 0.2 < hi < 0.25  # Δpass@4's t-interval over the 4 seeds holds the planted 0.2
    assert "| n=0 | base over 4 sampling seeds |" in md
    floor = noise_floor(deltas).set_index(["rung", "k"])  # no fingerprints saved: one build
    # runs of one seed share their base's evaluation: the floor counts sampling seeds, not runs
    assert floor.loc[("n=0", 4), "evaluations"] == 4 and 0.005 < floor.loc[("n=0", 4), "sd"] < 0.05
    assert floor["disagree"].eq(0).all()
    # a run whose step-0 evaluation differs from its seed's other runs' is named, not silently dropped
    odd = deltas["run"] == "n0__nsr__s2"
    deltas.loc[odd, "base"] += 0.01
    assert noise_floor(deltas).set_index(["rung", "k"]).loc[("n=0", 4), "disagree"] == 1
    row = "| n=0 | base over 4 sampling seeds; runs of 1 seed evaluated it differently (first kept) |"
    assert row in summary_markdown(deltas, 4)
    # a rung rebuilt on another machine (same recipe, other bits: config.json's model_fingerprint) is named too
    # ... with a base row per build naming whose cells started from it; the other build explains the difference
    deltas["weights"] = deltas["weights"].where(odd, "aaaa1111bbbb").where(~odd, "cccc2222dddd")
    md = summary_markdown(deltas, 4)
    assert "| n=0 | base over 4 sampling seeds; build aaaa1111, cells nsr s0,1,3; psr s0,1,2,3 | |" in md
    assert "| n=0 | base over 1 sampling seed; build cccc2222, cells nsr s2 | |" in md
    assert "evaluated it differently" not in md
    floor = noise_floor(deltas).set_index(["rung", "build", "k"])
    assert floor.loc[("n=0", "cccc2222dddd", 4), "base"] == deltas.loc[odd & (deltas["k"] == 4), "base"].iloc[0]
    # runs saved before the fingerprint key count with the rung's most used build, not as a third one
    deltas.loc[deltas["run"] == "n0__psr__s0", "weights"] = None
    assert "base over 4 sampling seeds; build aaaa1111, cells nsr s0,1,3; psr s0,1,2,3 |" in summary_markdown(deltas, 4)
    # and a contrast whose paired runs started from different builds says so (‡), where they did only
    con = contrast_table(deltas, (4,)).set_index(["a", "b", "rung"])["mixed_builds"]
    assert con[("nsr", "psr", "n=0")] and con[("nsr", "psr", "highest − lowest rung")] and not con[("nsr", "psr", "n=1000")]
    assert "‡ |" in next(line for line in md.splitlines() if line.startswith("| NSR − PSR, Δpass@4 |"))
    from rlvr_utils.study.perseed import _ends_mixed  # a named model's rung (no order) is not an end of the axis

    assert not _ends_mixed([{"rung_order": float("nan"), "mixed_builds": True}, {"rung_order": 0.0, "mixed_builds": False},
                            {"rung_order": 1000.0, "mixed_builds": False}])


def test_objectives_are_paired_by_seed(tmp_path):
    """Runs of one seed share their base evaluation, prompts and first rollouts: a shift common to a seed's
    objectives (SD 0.1) cancels in their contrast, so the planted 0.1 is found with the runs' own noise
    (0.01); treated as independent cells, the shift's variance would swamp it."""
    deltas = run_deltas(_grid(tmp_path, {(1000, "nsr"): 0.1}, noise=0.01, shared=0.1))
    it = perseed_interaction(deltas, k=4)
    assert it["lo"] > 0.05 and it["hi"] < 0.15 and it["df"] < 7, it  # 2 rungs x (4 seeds - 1)
    eff = perseed_effect_table(deltas).set_index(["rung", "objective", "k"])
    assert eff.loc[("n=1000", "nsr", 4), "hi"] - eff.loc[("n=1000", "nsr", 4), "lo"] > 0.2  # each cell alone: wide
    c = contrast_table(deltas, ks=(4,)).set_index("rung")
    assert c.loc["n=1000", "lo"] > 0.05 and c.loc["n=0", "lo"] < 0 < c.loc["n=0", "hi"]


def test_planted_noise_is_not_an_effect(tmp_path):
    deltas = run_deltas(_grid(tmp_path, {}, noise=0.05, seed=1))
    it = perseed_interaction(deltas, k=4)
    assert it["lo"] < 0 < it["hi"] and it["mde_80"] > 0.05
    assert answer(deltas, 4).startswith("no detectable change")


def test_contrasts_between_objectives_recover_a_planted_one(tmp_path):
    """W-REINFORCE planted 0.15 above PSR and NSR on the strong rung only: the contrast table finds it
    there and in its change across rungs, and nowhere else."""
    deltas = run_deltas(_grid(tmp_path, {(1000, "w_reinforce"): 0.15}, noise=0.01, objectives=("psr", "nsr", "w_reinforce")))
    t = contrast_table(deltas, ks=(4,)).set_index(["a", "b", "rung"])
    assert [tuple(i[:2]) for i in t.index[::3]] == [("nsr", "psr"), ("w_reinforce", "psr"), ("w_reinforce", "nsr")]
    assert set(t["over"]) == {"seeds"}
    for (a, b, rung), r in t.iterrows():
        planted = a == "w_reinforce" and rung != "n=0"
        # unplanted contrasts: near 0 (each interval is 95%, so one of six may miss 0 by chance)
        assert (r["lo"] > 0.1 and r["hi"] < 0.2) if planted else abs(r["est"]) < 0.03, (a, b, rung, r.to_dict())
    md = summary_markdown(deltas, 4)
    row = next(line for line in md.splitlines() if line.startswith("| W-REINFORCE − PSR, Δpass@4 |"))
    assert row.count("[") == 3, row  # n=0, n=1000, and the change across them


def test_a_lam_sweep_is_two_arms_not_one_pooled_cell(tmp_path):
    """W-REINFORCE at lam 0.1 and 0.5 (0.5 planted +0.15 on the strong rung): each lam is its own arm in
    every table; pooled, the planted effect would be halved and one seed counted twice."""
    arms = ("psr", ("w_reinforce", {"lam": 0.1}), ("w_reinforce", {"lam": 0.5}))
    deltas = run_deltas(_grid(tmp_path, {(1000, "w_reinforce__lam0.5"): 0.15}, noise=0.01, objectives=arms))
    assert set(deltas["objective"]) == {"psr", "w_reinforce[lam=0.1]", "w_reinforce[lam=0.5]"}  # psr's lam is unread
    eff = perseed_effect_table(deltas).set_index(["rung", "objective", "k"])
    assert eff.loc[("n=1000", "w_reinforce[lam=0.5]", 4), "lo"] > 0.1
    assert eff.loc[("n=1000", "w_reinforce[lam=0.1]", 4), "hi"] < 0.05 and eff["seeds"].eq(4).all()
    t = contrast_table(deltas, ks=(4,)).set_index(["a", "b", "rung"])
    assert t.loc[("w_reinforce[lam=0.5]", "w_reinforce[lam=0.1]", "n=1000"), "lo"] > 0.1
    assert "| W-REINFORCE[lam=0.5] − W-REINFORCE[lam=0.1], Δpass@4 |" in summary_markdown(deltas, 4)




def test_problem_bootstrap_within_one_run(tmp_path):
    run = RunDir(tmp_path / "r")
    def recs(solved: int):
        return [{"protocol": "sampled", "problem_id": f"p{i}", "sample": j, "status": "correct" if i < solved else "incorrect"}
                for i in range(40) for j in range(4)]
    write_eval(run, 0, recs(10))
    write_eval(run, 6, recs(20))
    m, lo, hi = problem_delta(run.path, k=1)
    assert m == pytest.approx(0.25) and lo > 0.1
    write_eval(run, 6, recs(10))
    m, lo, hi = problem_delta(run.path, k=1)
    assert m == 0 and lo <= 0 <= hi




def test_one_seed_interaction_is_over_problems(tmp_path):
    """With one seed per cell the answer's interval is a paired bootstrap over problems, and says so."""
    for lift, expect in ((12, "rises"), (0, "no detectable change")):
        root = tmp_path / f"lift{lift}"
        for n in (0, 1000):
            rung = root / "rungs" / f"n{n}"
            rung.mkdir(parents=True)
            (rung / "warmstart.json").write_text(json.dumps({"n": n}))
            for obj in ("psr", "nsr"):
                run = RunDir(root / "grid" / f"n{n}__{obj}__s0")
                run.path.mkdir(parents=True)
                run.config.write_text(json.dumps({"model": str(rung), "objective": obj, "seed": 0}))
                after = 10 + (lift if (n, obj) == (1000, "nsr") else 0)
                append_jsonl(run.evals, [_ev(0, 0.25), _ev(6, after / 40)])
                write_eval(run, 0, _recs(10))
                write_eval(run, 6, _recs(after))
        text = answer(run_deltas(load_grid(root / "grid")), 1)
        assert expect in text and "over 40 problems, one seed per cell" in text, text
    lift = run_deltas(load_grid(tmp_path / "lift12" / "grid"))
    assert "+0.300" in answer(lift, 1)
    # so are the contrasts between objectives, per rung and across them
    c = contrast_table(lift, ks=(1,)).set_index("rung")
    assert set(c["over"]) == {"problems"} and c.loc["n=1000", "est"] == pytest.approx(0.3)
    assert c.loc["highest − lowest rung", "est"] == pytest.approx(0.3) and c.loc["n=0", "est"] == 0
    # objectives that share no seed are compared unpaired, over problems, and their builds as sets (‡)
    from rlvr_utils.study.perseed import contrast

    apart = lift.assign(seed=lift["seed"].where(lift["objective"] == "psr", 5),
                        weights=lift["objective"].map({"psr": "aaaa", "nsr": "bbbb"}))
    unpaired = contrast(apart, 1, "nsr", "psr", "n=0")
    assert unpaired["over"] == "problems" and unpaired["mixed_builds"]
    assert not contrast(apart.assign(weights="aaaa"), 1, "nsr", "psr", "n=0")["mixed_builds"]
    # a study part-way through its seeds: one cell with two, the others with one
    root = tmp_path / "lift0"
    run = RunDir(root / "grid" / "n0__psr__s1")
    run.path.mkdir(parents=True)
    run.config.write_text(json.dumps({"model": str(root / "rungs" / "n0"), "objective": "psr", "seed": 1}))
    append_jsonl(run.evals, [_ev(0, 0.25), _ev(6, 0.25)])
    write_eval(run, 0, _recs(10))
    write_eval(run, 6, _recs(10))
    text = answer(run_deltas(load_grid(root / "grid")), 1)
    assert "some cells with one seed, others' seeds averaged per problem" in text, text
    # both seeds' pass@1 is unchanged overall, but seed 1 lost five problems and gained five others:
    # the seeds agree exactly, so the cell's interval comes from the problems, not a zero-width t
    write_eval(run, 6, [r | {"status": "correct" if 5 <= int(r["problem_id"][1:]) < 15 else "incorrect"}
                        for r in _recs(0)])
    row = next(line for line in summary_markdown(run_deltas(load_grid(root / "grid")), 1).splitlines()
               if line.startswith("| n=0 | psr | 2 |"))
    lo, hi = (float(x) for x in row.split("|")[4].split("[")[1].split("]")[0].split(","))
    assert lo < 0 < hi and row.split("|")[4].strip().endswith("†"), row
    eff = perseed_effect_table(run_deltas(load_grid(root / "grid")))
    cell = eff[(eff["rung"] == "n=0") & (eff["objective"] == "psr") & (eff["k"] == 1)].iloc[0]
    assert cell["over"] == "problems, seeds agree" and cell["lo"] < 0 < cell["hi"]
    assert set(eff["over"]) == {"problems, one seed", "problems, seeds agree"}
    # every cell with two seeds that moved by the same amount: the answer's interval is over problems
    for n in (0, 1000):
        for obj in ("psr", "nsr") if n else ("nsr",):
            src, run = RunDir(root / "grid" / f"n{n}__{obj}__s0"), RunDir(root / "grid" / f"n{n}__{obj}__s1")
            run.path.mkdir(parents=True)
            run.config.write_text(src.config.read_text().replace('"seed": 0', '"seed": 1'))
            run.evals.write_text(src.evals.read_text())
            for step in (0, 6):
                write_eval(run, step, _recs(10))
    text = answer(run_deltas(load_grid(root / "grid")), 1)
    assert "every cell's seeds moved by the same amount" in text and "0.000" in text, text




def test_named_model_rungs_report_without_a_prior_axis(tmp_path):
    """Runs from named models (the cpu, seed and paper profiles) have no rung order: the summary still
    reports each objective, its noise floor and their contrast, and says why there is no interaction."""
    for model in ("smollm2-135m", "qwen2.5-0.5b"):
        for obj in ("psr", "nsr"):
            for s in range(2):
                run = RunDir(tmp_path / f"{model}__{obj}__s{s}")
                run.path.mkdir()
                run.config.write_text(json.dumps({"model": model, "objective": obj, "seed": s}))
                append_jsonl(run.evals, [_ev(0, 0.3 + 0.01 * s), _ev(6, 0.35 + (0.05 + 0.01 * s) * (obj == "nsr"))])
    deltas = run_deltas(load_grid(tmp_path))
    md = summary_markdown(deltas, 4)
    assert "the prior axis needs two or more" in md and "| smollm2-135m | base over 2 sampling seeds |" in md, md
    c = contrast_table(deltas, ks=(4,))
    assert set(c["rung"]) == {"smollm2-135m", "qwen2.5-0.5b"} and np.allclose(c["est"], 0.055), c


def test_a_run_still_under_way_is_left_out_of_the_estimands(tmp_path):
    # a study commits finished cells only: a cell past its last evaluation but not yet marked done (or failed) must
    # not enter a report, or the committed REPORT.md would differ from one computed in a clone
    runs = _grid(tmp_path, {}, noise=0.01)
    RunDir(runs[0].path).set_status("running")
    RunDir(runs[1].path).set_status("done")
    names = set(run_deltas(load_grid(tmp_path / "grid"))["run"])
    assert runs[0].name not in names and runs[1].name in names and len(names) == len(runs) - 1
