"""The guessing floor: pass@k of a blind guesser that ignores the question and draws each of its k answers
independently from the task's answer distribution q. On a problem whose gold answer has probability q_a its
pass@k is exactly 1 - (1 - q_a)^k; the floor is its mean over the evaluation's problems. A model's pass@k means
little where it is near this floor: at large k a task with few likely answers measures guessing.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import numpy as np


def answer_distribution(answers: Iterable[str]) -> dict[str, float]:
    """The empirical distribution of a task's answers (e.g. its train split's: what a model has seen)."""
    counts = Counter(str(a) for a in answers)
    n = sum(counts.values())
    if not n:
        raise ValueError("an answer distribution needs at least one answer")
    return {a: c / n for a, c in counts.items()}


def guess_pass_at_k(golds: Sequence[str], dist: dict[str, float], k: int) -> np.ndarray:
    """Per problem: P(any of k independent draws from `dist` equals the gold answer) = 1 - (1 - q_gold)^k."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    q = np.array([dist.get(str(g), 0.0) for g in golds], dtype=float)
    return -np.expm1(k * np.log1p(-np.minimum(q, 1.0))) if len(q) else q  # exact in floating point where q is tiny


def guessing_floor(golds: Sequence[str], dist: dict[str, float], ks: Sequence[int]) -> dict[int, float]:
    """{k: the blind guesser's mean pass@k over the problems whose gold answers are `golds`}."""
    return {int(k): float(guess_pass_at_k(golds, dist, k).mean()) for k in ks}


def collision(dist: dict[str, float]) -> float:
    """sum_a q_a^2: a guess's chance of matching a gold drawn from the same distribution; about floor@k / k for
    small floors, so 1 / collision is the answer space's effective size."""
    return float(sum(p * p for p in dist.values()))
