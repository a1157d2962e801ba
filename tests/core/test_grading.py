import json
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hostile import HOSTILE
from rlvr_utils.data.sources import load_math
from rlvr_utils.core.grading import STATUSES, GradingPool, RewardSpec, extract_answer

pytestmark = pytest.mark.slow  # real models, papermill, vLLM or the grading pool: `make test`, not test-fast


def test_memory_cap_counts_growth_not_what_the_main_module_maps(tmp_path):
    """A spawned worker re-imports the main module first; CUDA torch maps GBs there (seen on an H200)."""
    script = tmp_path / "big_main.py"
    script.write_text(textwrap.dedent("""
        import mmap
        _held = mmap.mmap(-1, 3 << 30)  # 3 GB of address space, never touched: what CUDA libraries are to RLIMIT_AS
        if __name__ == "__main__":
            from rlvr_utils.core.grading import GradingPool
            with GradingPool(workers=1, mem_mb=2048) as pool:
                print(pool.grade(["so \\\\boxed{2}"], ["2"])[0].status)
    """))
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert out.stdout.strip() == "correct", out.stderr[-3000:]


def test_workers_that_cannot_start_raise_why_instead_of_hanging():
    with GradingPool(workers=1, mem_mb=1) as pool:  # 1 MB above start-up: math-verify cannot import
        with pytest.raises(RuntimeError, match="start-up.*MemoryError"):
            pool.grade(["\\boxed{\\frac{1}{2}}"], ["0.5"])  # not two integers: a worker must compare them


def test_statuses_and_rewards(pool):
    res = pool.grade(
        [r"so \boxed{\frac{1}{2}}", r"\boxed{0.5}", r"\boxed{3}", "I don't know", r"\boxed{2}"],
        ["\\frac12", "\\frac{1}{2}", "4", "4", ""],
    )
    assert [r.status for r in res] == ["correct", "correct", "incorrect", "no_answer", "invalid_gold"]
    assert [r.reward for r in res] == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert res[0].extracted == r"\frac{1}{2}" and res[0].policy == "boxed"


def test_reward_spec_is_configurable():
    with GradingPool(workers=1, reward=RewardSpec(correct=1.0, wrong=-1.0)) as p:
        assert [r.reward for r in p.grade([r"\boxed{1}", r"\boxed{2}", "none"], ["1", "1", "1"])] == [1, -1, -1]


def test_extraction_policy_is_explicit():
    text = "Step 1 ...\nThe answer is: 42"
    assert extract_answer(text, "boxed") is None
    assert extract_answer(text, "boxed_or_answer_is") == "42"
    assert extract_answer("The answer is $\\frac{3}{4}$.", "boxed_or_answer_is") == "\\frac{3}{4}"
    # a box wins over the fallback; the last "answer is" counts, after its last '='
    assert extract_answer("The answer is: 1\n\\boxed{2}", "boxed_or_answer_is") == "2"
    assert extract_answer("the answer is 3\nno, the answer is 2 * 2 = 4.\nDone.", "boxed_or_answer_is") == "4"
    assert extract_answer("The answer is: \n", "boxed_or_answer_is") is None
    # the paper's MATH reward: the box, else the last "answer is", else the last number (commas dropped)
    assert extract_answer("so 12 + 30 = 42 apples.", "boxed_or_last_number") == "42"
    assert extract_answer("she has 3,000 left", "boxed_or_last_number") == "3000"
    assert extract_answer("x = -.5 then", "boxed_or_last_number") == "-.5"
    assert extract_answer("The answer is: 7\nCheck: 7 - 1 = 6", "boxed_or_last_number") == "7"
    assert extract_answer("is 5 or \\boxed{6} or 7", "boxed_or_last_number") == "6"
    assert extract_answer("no digits here", "boxed_or_last_number") is None
    assert extract_answer("so 12 + 30 = 42 apples.", "boxed_or_answer_is") is None
    with pytest.raises(ValueError, match="unknown extraction policy"):
        extract_answer("x", "loose")


def test_fallback_policy_in_pool():
    with GradingPool(workers=1, policy="boxed_or_answer_is") as p:
        r = p.grade(["blah\nThe answer is: 7"], ["7"])[0]
    assert (r.status, r.policy) == ("correct", "boxed_or_answer_is")


def test_last_number_policy_grades_and_survives_hostile_text():
    """The paper's lenient fallback hands the grader numbers cut from untrusted text: hostile completions
    still come back with a status, and the pool still grades after them."""
    with GradingPool(workers=2, policy="boxed_or_last_number", timeout=2.0) as p:
        res = p.grade(["she has 3,000 left", "so 7 - 1 = 6."] + [c for _, c in HOSTILE] + [r"\boxed{2}"],
                      ["3000", "7"] + ["2"] * (len(HOSTILE) + 1))
    assert [r.status for r in res[:2]] == ["correct", "incorrect"] and res[0].policy == "boxed_or_last_number"
    assert all(r.status in STATUSES for r in res) and res[-1].status == "correct"


def test_reference_solutions_grade_correct_against_own_gold(pool, math_dir):
    probs = load_math(math_dir, "test")
    res = pool.grade([p.solution for p in probs], [p.gold for p in probs])
    bad = [(p.id, p.gold, r.status) for p, r in zip(probs, res) if r.status != "correct"]
    assert len(bad) / len(probs) <= 0.005, bad[:20]


def test_reference_solutions_not_correct_against_other_gold(pool, math_dir):
    probs = load_math(math_dir, "test")
    rng = random.Random(0)
    pairs = []
    for p in probs:
        other = rng.choice(probs)
        while "".join(other.gold.split()) == "".join(p.gold.split()):
            other = rng.choice(probs)
        pairs.append((p, other))
    res = pool.grade([p.solution for p, _ in pairs], [o.gold for _, o in pairs])
    wrong_correct = [(p.gold, o.gold) for (p, o), r in zip(pairs, res) if r.status == "correct"]
    assert len(wrong_correct) / len(pairs) <= 0.005, wrong_correct


@pytest.mark.parametrize("name,completion", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_completion_returns_in_time(name, completion):
    timeout = 2.0
    with GradingPool(workers=1, timeout=timeout) as p:
        # wait for the worker to be up (start-up is not grading time): a symbolic pair, which only a worker grades
        assert p.grade([r"\boxed{x^2}"], ["x^2"])[0].status == "correct"
        t0 = time.perf_counter()
        (r,) = p.grade([completion], ["2"])
        took = time.perf_counter() - t0
    assert r.status in STATUSES
    assert took <= timeout + 1.0, (name, took, r.status)


def test_hostile_batch_never_hangs_and_pool_recovers():
    # the deadline the per-item test holds, not the session pool's 5 s
    with GradingPool(workers=2, timeout=2.0) as pool:
        t0 = time.perf_counter()
        res = pool.grade([c for _, c in HOSTILE] + [r"\boxed{2}"], ["2"] * (len(HOSTILE) + 1))
        took = time.perf_counter() - t0
    assert len(res) == len(HOSTILE) + 1
    assert res[-1].status == "correct"  # workers replaced after kills still grade
    # two workers, each item bounded by the timeout (+ restart)
    assert took < (len(HOSTILE) / 2 + 2) * (pool.timeout + 1.5)
    assert {"timeout", "error", "incorrect", "no_answer"} & {r.status for r in res}


def test_python_code_never_executes(tmp_path, pool):
    marker = tmp_path / "pwned"
    code = f"__import__('os').system('touch {marker}')"
    pool.grade([f"\\boxed{{{code}}}", f"The answer is: {code}"], [code, "1"])
    assert not marker.exists()


def test_cli_grade_jsonl(tmp_path):
    from rlvr_utils.cli import main

    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join([
        json.dumps({"completion": r"\boxed{4}", "answer": "4", "x": 1}),
        "{not json",
        json.dumps({"completion": r"\boxed{5}", "answer": "4"}),
        json.dumps({"answer": "4"}),
        json.dumps({"completion": "nothing", "answer": "4"}),
    ]) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["grade", "--jsonl", str(inp), "--out", str(out), "--workers", "1"]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["status"] for r in rows] == ["correct", "error", "incorrect", "error", "no_answer"]
    assert all({"status", "reward", "extracted", "seconds"} <= r.keys() for r in rows)
    assert rows[0]["reward"] == 1.0 and rows[2]["extracted"] == "5"


def test_model_text_never_reaches_parse_expr_as_code(monkeypatch):
    """sympy's parse_expr is eval underneath: verification may hand it only number literals that
    latex2sympy2's grammar already validated (sympy.Number("12")), never an expression or a name."""
    import re

    import math_verify.parser as mvp
    import sympy.parsing.sympy_parser as sp

    from rlvr_utils.core.grading import verify_pair

    seen = []
    orig = sp.parse_expr

    def spy(s, *a, **k):
        seen.append(s)
        return orig(s, *a, **k)

    monkeypatch.setattr(mvp, "parse_expr", spy)
    monkeypatch.setattr(sp, "parse_expr", spy)
    mvp.parse_expr_cached.cache_clear()
    for ans, gold in [("1+1", "2"), ("2*3", "6"), ("\\frac{1}{2}", "0.5"), ("__import__('os').getcwd()", "1"),
                      ("(1+2)/3", "1"), ("10 / 4", "2.5"), ("x**2 + lambda", "1")]:
        verify_pair(ans, gold)
    assert seen and all(re.fullmatch(r"[0-9.]+", s) for s in seen), seen
    assert verify_pair("\\frac{1}{2}", "0.5") == "correct" and verify_pair("3", "0.5") == "incorrect"


def test_integer_answers_are_graded_without_a_worker_as_math_verify_would(pool):
    """Generated tasks' answers are integers: compared as numbers in the caller (no worker round trip), with
    math-verify's verdict on every pair."""
    from math_verify import parse, verify

    pairs = [("7", "7"), ("-12", "-12"), ("007", "7"), ("-0", "0"), ("12", "21"), ("3", "-3"), ("100", "1000")]
    res = pool.grade([f"so \\boxed{{{a}}}" for a, _ in pairs], [g for _, g in pairs])
    for (a, g), r in zip(pairs, res):
        assert (r.status == "correct") == verify(parse(f"${g}$"), parse(f"${a}$")), (a, g, r)
        assert r.detail == "" and r.seconds < 0.01  # no worker: no process round trip


def test_a_closed_pool_stops_the_resource_tracker_a_kernels_shutdown_would_wait_on():
    """multiprocessing's resource tracker ignores SIGTERM, which ipykernel's shutdown sends a kernel's children
    before it exits: a training kernel that had a pool was terminated by jupyter_client 2.5 s later."""
    script = textwrap.dedent("""
        import os
        from multiprocessing import resource_tracker as rt
        from rlvr_utils.core.grading import GradingPool
        def tracker():
            pid = rt._resource_tracker._pid
            return pid is not None and os.path.exists(f"/proc/{pid}")
        a, b = GradingPool(workers=1), GradingPool(workers=1)
        assert a.grade(["\\\\boxed{1/2}"], ["0.5"])[0].status == "correct" and tracker()
        a.close()
        kept = tracker()  # b's worker still uses it
        b.close()
        stopped = not tracker()
        c = GradingPool(workers=1)  # a later pool starts it again
        again = c.grade(["\\\\boxed{1/2}"], ["0.5"])[0].status == "correct" and tracker()
        c.close()
        print(kept, stopped, again)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["True", "True", "True"], out.stdout + out.stderr[-3000:]
