import json
import tarfile

import pytest

from rlvr_utils.data.sources import DataError, check_gold, count_table, load_math, stratified_sample, write_jsonl
from rlvr_utils.core.grading import last_boxed


def test_last_boxed_nested_and_last():
    assert last_boxed(r"a \boxed{1} then \boxed{\frac{1}{\sqrt{2}}}") == r"\frac{1}{\sqrt{2}}"
    assert last_boxed(r"\fbox{x} and \boxed{y}") == "y"
    assert last_boxed(r"\boxed{y} and \fbox{\{1,2\}}") == r"\{1,2\}"
    assert last_boxed(r"so \boxed 5.") == "5."
    assert last_boxed(r"\boxed{unclosed {") is None
    assert last_boxed("no box") is None
    deep = "\\boxed{" + "{" * 5000 + "x" + "}" * 5000 + "}"
    assert last_boxed(deep) == "{" * 5000 + "x" + "}" * 5000


def test_shared_subset_loads_with_gold(math_dir):
    for split, n in (("train", 1872), ("test", 1246)):
        probs = load_math(math_dir, split)
        assert len(probs) == n
        rep = check_gold(probs)
        # MATH itself has one train solution ending in an empty \boxed{} (the answer, 0, is missing)
        assert len(rep.no_gold) == (1 if split == "train" else 0)
        # the README says the provided column is unreliable: the check must find the disagreements
        assert len(rep.disagree) > 0
        assert len({p.id for p in probs}) >= n - 2
    levels = {p.level for p in load_math(math_dir, "train")}
    assert "Level ?" in levels


def test_official_layout_dir_and_tar(tmp_path, math_dir):
    probs = load_math(math_dir, "test")[:6]
    root = tmp_path / "MATH"
    for i, p in enumerate(probs):
        d = root / "test" / p.type.lower().replace(" ", "_")
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i}.json").write_text(json.dumps(
            {"problem": p.problem, "solution": p.solution, "level": p.level, "type": p.type}))
    got = load_math(root, "test")
    assert sorted(x.id for x in got) == sorted(x.id for x in probs)
    tar = tmp_path / "MATH.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(root, arcname="MATH")
    assert sorted(x.gold for x in load_math(tar, "test")) == sorted(x.gold for x in probs)


def test_malformed_input_names_file_and_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"problem": "a", "solution": "\\\\boxed{1}", "level": "Level 1", "type": "Algebra"}\n{oops\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        load_math(f)
    f.write_text('{"problem": "a", "level": "Level 1", "type": "Algebra"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: missing .*solution"):
        load_math(f)
    (tmp_path / "weird").mkdir()
    with pytest.raises(DataError, match="unknown layout"):
        load_math(tmp_path / "weird")
    with pytest.raises(DataError, match="no such file"):
        load_math(tmp_path / "nope.jsonl")


def test_stratified_sample_matches_ratio_and_is_seeded(math_dir):
    probs = load_math(math_dir, "train")
    a = stratified_sample(probs, 0.25, seed=42)
    b = stratified_sample(list(reversed(probs)), 0.25, seed=42)
    assert [p.id for p in a] == [p.id for p in b]  # input order does not matter
    assert [p.id for p in a] != [p.id for p in stratified_sample(probs, 0.25, seed=1)]
    table = count_table(probs)
    sub = count_table(a)
    for subject in table.index[:-1]:
        assert sub.loc[subject, "total"] == max(1, round(0.25 * table.loc[subject, "total"]))


def test_write_jsonl_roundtrip_and_atomic(tmp_path, math_dir):
    probs = load_math(math_dir, "test")[:20]
    out = write_jsonl(probs, tmp_path / "d" / "x.jsonl")
    again = load_math(out)
    assert [p.to_dict() for p in again] == [p.to_dict() for p in probs]
    assert [p.name for p in out.parent.iterdir()] == ["x.jsonl"]  # no temp files left


def test_cli_data_check_and_sample(tmp_path, math_dir, capsys):
    from rlvr_utils.cli import main

    assert main(["data", "check", str(math_dir), "--split", "test", "--show", "2"]) == 0
    out = capsys.readouterr().out
    assert "no gold answer" in out and "disagrees" in out
    assert main(["data", "sample", str(math_dir), "--split", "train", "--ratio", "0.1",
                 "--out", str(tmp_path / "s.jsonl")]) == 0
    assert 150 < len(load_math(tmp_path / "s.jsonl")) < 225


def test_stratified_subset_exact_size_and_proportional(math_dir):
    from rlvr_utils.data.sources import stratified_subset

    probs = load_math(math_dir, "test")
    sub = stratified_subset(probs, 100, seed=0)
    assert len(sub) == 100 and len({p.id for p in sub}) == 100
    full, part = count_table(probs)["total"], count_table(sub)["total"]
    for subject in full.index[:-1]:
        assert abs(part[subject] - 100 * full[subject] / len(probs)) < 1
    assert [p.id for p in stratified_subset(probs, 100, seed=0)] == [p.id for p in sub]
