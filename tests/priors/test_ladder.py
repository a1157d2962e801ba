"""A ladder of rungs with several builds: rung means over builds, and the pre-registered rule judged on them."""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from scipy import stats

from rlvr_utils.data.tasks import load_task
from rlvr_utils.priors.ladder import LadderRule, ladder_report, ladder_verdict, rungs_of
from rlvr_utils.priors.recipes import FamilyRung

TASK = "gen:column?difficulty=2&n=4000"


def _build(root: Path, size: str, tokens: int, seed: int, p1: float, p256: float | None) -> Path:
    """A build's folder as `family.py` leaves it: its recipe file and its measured prior (n = 512 where p256): at
    T = 1, over the ceiling everywhere (0.97), and under the `paper` protocol, pass@256 `p256` (its pass@1 p1 + 0.1)."""
    # a build pretrained by `rlvr family --builds` records the loss-only request it was pretrained under: still a
    # build of its rung
    r = FamilyRung(size=size, tokens=tokens, seed=seed, task=TASK, eval_samples=0 if seed == 1 else 512)
    d = root / r.key()
    d.mkdir(parents=True)
    (d / r.recipe_file).write_text(json.dumps({**asdict(r), "tokens_seen": tokens}))
    def row(ks: dict) -> dict:
        return {k: {"mean": v, "lo": 0, "hi": 1, "n": 64} for k, v in ks.items()}

    n512 = p256 is not None
    (d / "prior.json").write_text(json.dumps({
        "greedy": {"mean": p1, "lo": 0, "hi": 1, "n": 64}, "pass_at_k": row({"1": p1, **({"256": 0.97} if n512 else {})}),
        "protocols": {"paper": {"n": 512, "pass_at_k": row({"1": p1 + 0.1, "256": p256})}} if n512 else {}}))
    return d


PLAN = {("1m", 2_000_000): ([0.05, 0.08, 0.11], [0.55, 0.60, 0.65]), ("1m", 4_000_000): ([0.3, 0.2, 0.25], [0.8] * 3),
        ("1m", 8_000_000): ([0.5, 0.55, 0.6], [0.85, 0.88, 0.86]), ("3m", 4_000_000): ([0.4, 0.5, 0.45], [0.8] * 3)}


def _ladder(root: Path, plan=PLAN) -> list[Path]:
    return [_build(root, s, t, b, p1[b], pk[b]) for (s, t), (p1, pk) in plan.items() for b in range(len(p1))]


def test_a_ladder_that_meets_the_rule_stands_and_its_rung_means_carry_intervals_over_builds(tmp_path):
    dirs = _ladder(tmp_path)
    rungs = rungs_of(dirs[::-1])  # in prior-axis order whatever the folders' order
    assert [g.name for g in rungs] == ["fam-1m-2M", "fam-1m-4M", "fam-1m-8M", "fam-3m-4M"]
    assert all(sorted(g.seeds) == [0, 1, 2] for g in rungs)
    assert np.isclose(rungs[0].mean(1), 0.08) and np.isclose(rungs[2].mean(256, "paper"), np.mean([0.85, 0.88, 0.86]))
    assert np.isclose(rungs[2].mean(256), 0.97) and np.isclose(rungs[2].mean(1, "paper"), 0.65)
    ok, lines = ladder_verdict(rungs)
    assert ok and all(line.startswith("- meets") for line in lines), lines
    assert "pass@256 under `paper` 0.863 on fam-1m-8M" in lines[-1]
    # the same ladder judged on its T = 1 measurement (a rule without a protocol): 0.97 is over the ceiling
    assert ladder_verdict(rungs, LadderRule(protocol=""))[1][-1] == (
        "- **fails**: ceiling: highest mean pass@256 0.970 on fam-1m-2M (at most 0.9)")
    report = ladder_report(dirs)
    half = stats.t.ppf(0.975, 2) * np.std([0.05, 0.08, 0.11], ddof=1) / np.sqrt(3)  # t over 3 builds, df = 2
    assert f"0.080 [{0.08 - half:.3f}, {0.08 + half:.3f}]" in report and "**The ladder stands**" in report
    assert "0.050 / 0.080 / 0.110" in report  # each build's value beside the mean
    assert "paper: pass@256, mean over builds" in report and "0.850 / 0.880 / 0.860" in report
    floor = float(report.splitlines()[2].rsplit("|", 2)[1])
    assert 0 < floor <= 0.05  # the column task's blind guesser at k = 256
    assert "parts apart" not in report  # one part: nothing to split


def test_a_mixed_tasks_ladder_shows_each_part_apart_from_per_problem_counts(tmp_path):
    mixed = "gen:column?difficulty=2&n=40+gen:column?difficulty=3&n=8"
    test = load_task(mixed, "test")  # 10 problems of difficulty 2, 2 of difficulty 3
    dirs = []
    for seed, solved in enumerate((512, 256, 128)):  # each build solves difficulty 2 at solved/512, never 3
        r = FamilyRung(size="1m", tokens=8_000_000, seed=seed, task=mixed, eval_samples=512)
        d = tmp_path / r.key()
        d.mkdir(parents=True)
        (d / r.recipe_file).write_text(json.dumps({**asdict(r), "tokens_seen": 8_000_000}))
        counts = {"n": 512, "correct": {p.id: solved if p.type == "column:2" else 0 for p in test}}
        whole = {"1": {"mean": solved / 512 * 10 / 12, "lo": 0, "hi": 1, "n": 12}}
        (d / "prior.json").write_text(json.dumps({"task": mixed, "greedy": whole["1"], "pass_at_k": whole,
                                                  "per_problem": counts, "protocols": {
                                                      "paper": {"n": 512, "pass_at_k": whole, "per_problem": counts}}}))
        dirs.append(d)
    report = ladder_report(dirs)
    part = report[report.index("parts apart"):]
    d2 = next(x for x in part.splitlines() if "| column:2 |" in x)
    d3 = next(x for x in part.splitlines() if "| column:3 |" in x)
    assert d2.startswith("| fam-1m-8M | column:2 | 0.583 ") and d2.count("1.000 [1.000, 1.000]") == 2  # pass@1, @256
    assert d3.count("0.000 [0.000, 0.000]") == 4  # unsolved at every k, by every build, under both protocols


def test_each_clause_of_the_rule_fails_on_its_own(tmp_path):
    ceiling = {**PLAN, ("1m", 8_000_000): ([0.5, 0.55, 0.6], [0.95, 0.92, 0.90])}  # mean pass@256 0.923
    ok, lines = ladder_verdict(rungs_of(_ladder(tmp_path / "a", ceiling)))
    assert not ok and [line for line in lines if "fails" in line] == [
        "- **fails**: ceiling: highest mean pass@256 under `paper` 0.923 on fam-1m-8M (at most 0.9)"]
    short = {k: v for k, v in PLAN.items() if k != ("1m", 8_000_000)}  # top: highest 0.45 on 3m
    ok, lines = ladder_verdict(rungs_of(_ladder(tmp_path / "b", short)))
    assert not ok and {line.split(":")[1].strip() for line in lines if "fails" in line} == {"rungs", "top"}
    one_size = {k: v for k, v in PLAN.items() if k[0] == "1m"}
    two_builds = {k: (p1[:2], pk[:2]) for k, (p1, pk) in PLAN.items()}
    for plan, clause in ((one_size, "rungs"), (two_builds, "builds")):
        ok, lines = ladder_verdict(rungs_of(_ladder(tmp_path / clause, plan)))
        assert not ok and any(f"**fails**: {clause}" in line for line in lines)
    ok, lines = ladder_verdict(rungs_of(_ladder(tmp_path / "n32", {k: (p1, [None] * 3) for k, (p1, _) in PLAN.items()})))
    assert not ok and "fewer than 512 samples" in lines[-1]  # a prior measured without n >= 2k cannot show headroom
    assert ladder_verdict(rungs_of(_ladder(tmp_path / "low", PLAN)), LadderRule(bottom=0.05))[0] is False
