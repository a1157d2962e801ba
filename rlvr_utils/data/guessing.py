"""A generated task's guessing floor: the blind guesser's pass@k (`core.floor`) over a task's test split, with the
answer distribution the task's generator draws from (estimated from `draws` independent problems), or its train
split's (what a model pretrained or trained on it has seen)."""

from __future__ import annotations

import random
from typing import Sequence

from ..core.floor import answer_distribution, collision, guessing_floor
from .tasks import FAMILIES, load_task, task_parts


def generator_answers(spec: str, draws: int = 100_000, seed: int = 12345) -> list[str]:
    """`draws` answers of the task's generator, problems drawn with replacement (no split, no de-duplication); a
    mixed task's parts in proportion to their n."""
    parts = task_parts(spec)
    total = sum(p["n"] for _, p in parts)
    out: list[str] = []
    for name, p in parts:
        rng = random.Random(f"floor:{name}:{p['difficulty']}:{seed}")
        out += [str(FAMILIES[name](rng, p["difficulty"])[2]) for _ in range(round(draws * p["n"] / total))]
    return out


def task_floor(spec: str, ks: Sequence[int] = (1, 16, 256), reference: str = "generator", draws: int = 100_000) -> dict:
    """{"floor": {k: pass@k}, "answers": distinct answers, "effective": 1 / collision, "problems": test size} of the
    blind guesser on the test split of `spec`; `reference`: "generator" (its true distribution, estimated) or "train"."""
    if reference not in ("generator", "train"):
        raise ValueError(f"reference must be 'generator' or 'train', got {reference!r}")
    golds = [q.gold for q in load_task(spec, "test")]
    answers = generator_answers(spec, draws) if reference == "generator" else [q.answer for q in load_task(spec)]
    dist = answer_distribution(answers)
    return {"floor": guessing_floor(golds, dist, ks), "answers": len(dist), "effective": 1 / collision(dist),
            "problems": len(golds), "reference": reference}
