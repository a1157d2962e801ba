"""Generated task families: exact golds (real math-verify), determinism, splits, spec errors, difficulty."""

import re

import pytest

from rlvr_utils.data import tasks
from rlvr_utils.data.sources import DataError
from rlvr_utils.core.grading import last_boxed
from rlvr_utils.data.guessing import generator_answers, task_floor
from rlvr_utils.data.sources import stratified_subset
from rlvr_utils.data.tasks import FAMILIES, generate, is_task_spec, load_task, parse_task_spec, task_parts

DIFFICULTIES = (1, 2, 3, 4)
_STEP = re.compile(r"^(-?\d+) ([-+×/]) \(?(-?\d+)\)? = (-?\d+)$")
_APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "×": lambda a, b: a * b, "/": lambda a, b: a / b}


def test_families_registered():
    assert set(FAMILIES) == {"chain", "linear", "gsm", "column"}


def test_adding_a_family_leaves_the_others_outputs_as_they_were():
    import hashlib

    pinned = {"chain": "b2b997e9be5d3ffa287cef52370a9ac345f50f89", "linear": "9a95e62a67d70595b7cac14729af5ca4e1b175c8",
              "gsm": "014c7f53047128cbe19944c9e5c2db7d5ec6fab6"}  # before `column` joined
    for f, h in pinned.items():
        text = "".join(p.problem + p.solution for d in DIFFICULTIES for p in generate(f, 50, d, seed=0))
        assert hashlib.sha1(text.encode()).hexdigest() == h, f


@pytest.mark.parametrize("d", (1, 2, 3))
def test_column_gold_is_the_sum_or_difference_and_each_column_adds_up(d):
    for p in generate("column", 200, d, seed=2):
        a, op, b = re.fullmatch(r"Compute (\d+) ([-+]) (\d+)\.", p.problem).groups()
        assert len(a) == len(b) == d + 2 and int(p.gold) == (int(a) + int(b) if op == "+" else int(a) - int(b))
        for line in p.solution.splitlines():
            if m := re.match(r"\w[\w-]*: (\d) ([-+]) (\d) [-+] (\d) = (-?\d+)", line):
                x, o, y, c, s = m.groups()
                assert int(s) == (int(x) + int(y) + int(c) if o == "+" else int(x) - int(y) - int(c)), line


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_worked_solutions_grade_correct_and_other_golds_incorrect(family, pool):
    problems = [p for d in DIFFICULTIES for p in generate(family, 200, d, seed=0)]
    assert len(problems) == 800
    for d in DIFFICULTIES:
        batch = [p for p in problems if p.level == f"Difficulty {d}"]
        assert len(batch) == 200 and len({p.problem for p in batch}) == 200 and len({p.id for p in batch}) == 200
    for p in problems:
        assert p.type == family and re.fullmatch(r"-?\d+", p.gold) and p.answer == p.gold
        assert last_boxed(p.solution) == p.gold and p.solution.endswith(f"The answer is $\\boxed{{{p.gold}}}$.")

    own = pool.grade([p.solution for p in problems], [p.gold for p in problems])
    bad = [(p.problem, p.gold, r.status, r.detail) for p, r in zip(problems, own) if r.status != "correct"]
    assert not bad, bad[:5]

    # each solution against the next problem's gold (a derangement); equal golds must still grade correct
    others = [problems[(i + 1) % len(problems)].gold for i in range(len(problems))]
    crossed = pool.grade([p.solution for p in problems], others)
    expected = ["correct" if int(p.gold) == int(g) else "incorrect" for p, g in zip(problems, others)]
    agree = sum(r.status == e for r, e in zip(crossed, expected))
    assert expected.count("incorrect") > 0.8 * len(problems)  # the check is not vacuous
    assert agree / len(problems) >= 0.995, [(p.gold, g, r.status) for p, g, r, e in
                                            zip(problems, others, crossed, expected) if r.status != e][:5]


def _arith_steps(solution: str) -> list[tuple[int, str, int, int]]:
    steps = []
    for line in solution.splitlines()[:-1]:
        m = _STEP.match(line)
        assert m, line
        a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
        assert _APPLY[op](a, b) == c, line
        steps.append((a, op, b, c))
    return steps


@pytest.mark.parametrize("d", DIFFICULTIES)
def test_chain_gold_is_the_expression_value(d):
    for p in generate("chain", 200, d, seed=1):
        expr = re.fullmatch(r"Compute (.*)\.", p.problem)[1]
        terms = expr.split()[::2]
        assert len(terms) == d + 1 and all(len(t) <= 1 + (d - 1) // 2 for t in terms)
        assert d > 1 or "×" not in expr
        assert eval(expr.replace("×", "*")) == int(p.gold)  # our own generated text, not model text
        assert _arith_steps(p.solution)[-1][3] == int(p.gold)


@pytest.mark.parametrize("d", DIFFICULTIES)
def test_linear_gold_solves_the_equation(d):
    for p in generate("linear", 200, d, seed=1):
        eq = re.fullmatch(r"Solve for \$x\$: \$(.*)\$\.", p.problem)[1]
        x = int(p.gold)
        left, right = (_subst(side, x) for side in eq.split(" = "))
        assert left == right, (eq, x)
        assert len(p.solution.splitlines()) - 1 == d  # one step per difficulty level up to 4


def _subst(side: str, x: int) -> int:
    s = re.sub(r"(\d)\(", r"\1*(", side)          # 3(x + 2) -> 3*(x + 2)
    s = re.sub(r"(\d)x", rf"\1*({x})", s)          # 3x -> 3*(x)
    return eval(s.replace("x", f"({x})"))


@pytest.mark.parametrize("d", DIFFICULTIES)
def test_gsm_steps_follow_the_story(d):
    for p in generate("gsm", 200, d, seed=1):
        start = int(re.match(r"\w+ has (\d+) ", p.problem)[1])
        steps = _arith_steps(p.solution)
        assert len(steps) == min(d + 1, 4) == len(re.findall(r"\.", p.problem)) - 1
        value = start
        for a, _op, _b, c in steps:
            assert a == value and c >= 1
            value = c
        assert value == int(p.gold)


def test_difficulty_raises_terms_and_steps():
    def mean_steps(family, d):
        ps = generate(family, 50, d, seed=0)
        return sum(len(p.solution.splitlines()) - 1 for p in ps) / len(ps)

    chain_terms = [len(generate("chain", 1, d)[0].problem.split()[1::2]) for d in range(1, 7)]
    assert chain_terms == [2, 3, 4, 5, 6, 7]
    assert [mean_steps("linear", d) for d in (1, 2, 3, 4)] == [1, 2, 3, 4]
    assert [mean_steps("gsm", d) for d in (1, 2, 3, 4)] == [2, 3, 4, 4]
    assert [mean_steps("chain", d) for d in (1, 2, 3, 4)] == [1, 2, 3, 4]  # one line per operator
    # beyond the step cap the numbers still grow
    big = lambda f, d: max(abs(int(p.gold)) for p in generate(f, 200, d, seed=0))  # noqa: E731
    assert big("chain", 5) > big("chain", 3) > big("chain", 1)


def test_generate_is_deterministic():
    for family in FAMILIES:
        a, b = generate(family, 100, 2, seed=7), generate(family, 100, 2, seed=7)
        assert a == b
        assert generate(family, 40, 2, seed=7) == a[:40]  # a smaller n is a prefix
        c = generate(family, 100, 2, seed=8)
        assert len({p.problem for p in a} & {p.problem for p in c}) < 20


def test_load_task_splits_are_disjoint_and_sized():
    spec = "gen:gsm?difficulty=2&n=400&seed=3"
    train, test = load_task(spec, "train"), load_task(spec, "test")
    assert len(train) == 400 and len(test) == 100
    assert not {p.problem for p in train} & {p.problem for p in test}
    assert load_task(spec, "test") == test and train == generate("gsm", 400, 2, seed=3)
    # a small space: the test split is still n // 4 problems, none of them in train
    small = "gen:chain?n=150"
    tr, te = load_task(small, "train"), load_task(small, "test")
    assert len(te) == 37 and not {p.problem for p in tr} & {p.problem for p in te}
    assert {p.level for p in te} == {"Difficulty 1"}
    assert len(load_task("gen:linear", "train")) == 1000  # defaults: difficulty 1, n 1000, seed 0


def test_spec_parsing():
    assert parse_task_spec("gen:chain") == ("chain", {"difficulty": 1, "n": 1000, "seed": 0})
    assert parse_task_spec("gen:linear?seed=5&n=10") == ("linear", {"difficulty": 1, "n": 10, "seed": 5})
    assert is_task_spec("gen:chain?n=5") and not is_task_spec("../shared/data/math_subset") and not is_task_spec(None)
    cases = {
        "gen:countdown": ["countdown", "chain", "gsm", "linear"],
        "gen:chain?level=2": ["level=2", "difficulty", "n", "seed"],
        "gen:chain?difficulty": ["difficulty", "known keys"],
        "gen:chain?n=ten": ["n='ten'", "integer"],
        "gen:chain?difficulty=0": ["difficulty=0"],
        "chain?n=5": ["gen:"],
    }
    for spec, words in cases.items():
        with pytest.raises(DataError) as e:
            load_task(spec, "train")
        assert all(w in str(e.value) for w in words), (spec, str(e.value))
    with pytest.raises(DataError, match="split"):
        load_task("gen:chain?n=10", "validation")
    with pytest.raises(DataError, match="known: chain, column, gsm, linear"):
        generate("countdown", 10, 1, 0)


MIXED = "gen:column?difficulty=2&n=400+gen:column?difficulty=3&n=100"


def test_a_mixed_task_draws_each_part_as_its_own_spec_and_holds_it_at_its_share():
    parts = MIXED.split("+")
    for split in ("train", "test"):
        mixed = load_task(MIXED, split)
        alone = [load_task(p, split) for p in parts]
        assert len(mixed) == sum(map(len, alone)) == (500 if split == "train" else tasks.test_size(MIXED))
        for d, part in zip((2, 3), alone):  # each part is the problems its spec draws alone, subject family:difficulty
            assert [q.problem for q in mixed if q.type == f"column:{d}"] == [q.problem for q in part]
            assert {q.level for q in mixed if q.type == f"column:{d}"} == {f"Difficulty {d}"}
        for m in range(1, len(mixed) + 1):  # every prefix holds difficulty 3 at its share (1/5), within one problem
            assert abs(sum(q.type == "column:3" for q in mixed[:m]) - m / 5) <= 1
    test = load_task(MIXED, "test")
    assert not {q.problem for q in test} & {q.problem for q in load_task(MIXED)}
    sub = stratified_subset(test, 64, seed=0)  # what a prior evaluates: the shares exact (largest remainder)
    assert sorted(q.type for q in sub).count("column:3") == 13 and len(sub) == 64
    assert load_task(MIXED, "test") == test  # deterministic


def test_a_mixed_spec_is_read_part_by_part_and_its_errors_name_the_part():
    assert task_parts(MIXED) == [("column", {"difficulty": 2, "n": 400, "seed": 0}),
                                 ("column", {"difficulty": 3, "n": 100, "seed": 0})]
    assert task_parts("gen:chain?n=5") == [parse_task_spec("gen:chain?n=5")]
    with pytest.raises(DataError, match="task_parts"):
        parse_task_spec(MIXED)
    for spec, words in {"gen:column?difficulty=2+gen:column?difficulty=2": ["same problems"],
                        "gen:column?difficulty=2+column?difficulty=3": ["'column?difficulty=3'", "gen:"],
                        "gen:column+gen:chain?n=x": ["n='x'"]}.items():
        with pytest.raises(DataError) as e:
            load_task(spec)
        assert all(w in str(e.value) for w in words), (spec, str(e.value))


def test_a_mixed_tasks_guesser_draws_each_parts_answers_at_its_share():
    answers = generator_answers(MIXED, draws=1000)
    assert len(answers) == 1000
    assert answers[:800] == generator_answers(MIXED.split("+")[0], draws=800)  # the part, as its own spec draws it
    assert answers[800:] == generator_answers(MIXED.split("+")[1], draws=200)
    floor = task_floor(MIXED, ks=(1, 256), draws=20_000)
    assert floor["problems"] == 125 and 0 < floor["floor"][1] < floor["floor"][256] < 0.1


def test_exhausted_space_is_an_error_not_a_hang():
    assert len(generate("chain", 200, 1, seed=0)) == 200  # difficulty 1 has exactly 10 * 2 * 10 problems
    with pytest.raises(DataError, match="lower n or raise the difficulty"):
        generate("chain", 201, 1, seed=0)


def test_a_family_is_one_decorated_function():
    @tasks.family("double")
    def _double(rng, d):
        a = rng.randint(1, 10 ** d)
        return f"Double {a}.", [f"{a} × 2 = {2 * a}"], 2 * a

    try:
        ps = load_task("gen:double?n=8&difficulty=2", "train")
        assert len(ps) == 8 and all(p.type == "double" and last_boxed(p.solution) == p.gold for p in ps)
    finally:
        del FAMILIES["double"]
