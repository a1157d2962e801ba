"""The guessing floor against enumeration, pass@k from n = 512 against brute force, and the new task's floor."""

import itertools
from fractions import Fraction
from math import comb

import numpy as np
import pytest

from rlvr_utils.core.floor import answer_distribution, collision, guess_pass_at_k, guessing_floor
from rlvr_utils.core.stats import pass_at_k


def test_the_floor_matches_enumerating_every_sequence_of_guesses():
    dist = {"1": 0.5, "2": 0.3, "7": 0.15, "9": 0.05}
    golds = ["1", "7", "9", "4"]  # "4" is never guessed
    for k in (1, 2, 3, 5):
        exact = []
        for g in golds:
            hit = sum(np.prod([dist[a] for a in seq]) for seq in itertools.product(dist, repeat=k) if g in seq)
            exact.append(hit)
        assert guess_pass_at_k(golds, dist, k) == pytest.approx(exact, abs=1e-12)
        assert guessing_floor(golds, dist, [k])[k] == pytest.approx(np.mean(exact), abs=1e-12)


def test_a_tiny_probability_keeps_its_precision_at_large_k():
    q = 1e-9
    assert guess_pass_at_k(["a"], {"a": q, "b": 1 - q}, 256)[0] == pytest.approx(1 - (1 - Fraction(q)) ** 256, rel=1e-9)
    d = answer_distribution(["3", "3", "5", "8"])
    assert d == {"3": 0.5, "5": 0.25, "8": 0.25} and collision(d) == pytest.approx(0.375)


def _brute(n: int, c: int, k: int) -> Fraction:
    """P(a k-subset of n samples, c correct, holds a correct one), as the product over draws without replacement."""
    miss = Fraction(1)
    for i in range(k):
        miss *= Fraction(max(n - c - i, 0), n - i)
    return 1 - miss


def test_pass_at_k_from_512_samples_against_brute_force():
    n = 512
    for c in (0, 1, 2, 7, 100, 256, 400, 511, 512):
        for k in (1, 2, 4, 16, 64, 128, 256):
            assert pass_at_k(n, c, k) == pytest.approx(float(_brute(n, c, k)), rel=1e-12, abs=1e-15), (c, k)
    # and every k-subset of a small case, enumerated
    ok = [True, False, False, True, False, False, False, False, False, False]
    for k in range(1, 11):
        subsets = list(itertools.combinations(ok, k))
        assert pass_at_k(10, sum(ok), k) == pytest.approx(sum(any(s) for s in subsets) / comb(10, k))


def test_pass_at_k_from_512_samples_against_drawn_subsets():
    rng = np.random.default_rng(0)
    ok = np.zeros(512, bool)
    ok[:3] = True  # 3 correct of 512: pass@256 = 1 - (256·255·254)/(512·511·510)
    hits = [ok[rng.choice(512, 256, replace=False)].any() for _ in range(4000)]
    p = pass_at_k(512, 3, 256)
    assert abs(np.mean(hits) - p) < 4 * np.sqrt(p * (1 - p) / 4000)


def test_the_column_task_cannot_be_guessed_where_the_chain_task_can():
    from rlvr_utils.data.guessing import task_floor

    col = task_floor("gen:column?difficulty=2&n=4000", ks=(1, 256), draws=40_000)
    chain = task_floor("gen:chain?difficulty=2&n=4000", ks=(1, 256), draws=40_000)
    assert col["floor"][256] <= 0.05 and col["problems"] == 1000
    assert chain["floor"][256] > 0.8  # the family study's task: most of its pass@256 is a guesser's
    assert task_floor("gen:column?difficulty=2&n=4000", ks=(256,), reference="train")["floor"][256] <= 0.05


def test_the_ladder_table_has_the_floor_of_a_rung_s_task():
    from rlvr_utils.priors.measure import floor_cell
    from rlvr_utils.priors.recipes import FamilyRung, WarmStart

    assert float(floor_cell(FamilyRung(task="gen:column?difficulty=2&n=4000"), 256)) <= 0.05
    assert floor_cell(WarmStart(data="/some/math/dir"), 16) == "—"
