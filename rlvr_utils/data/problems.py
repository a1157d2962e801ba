"""The one problem record every source (MATH, generated tasks) becomes."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass


class DataError(ValueError):
    """Malformed input; the message names the file and line."""


@dataclass(frozen=True)
class MathProblem:
    id: str
    problem: str
    solution: str
    level: str
    type: str
    gold: str | None
    answer: str | None = None  # the source's own answer column, untrusted

    def to_dict(self) -> dict:
        return asdict(self)


def problem_id(problem: str, solution: str) -> str:
    """Content hash: stable across sources, orderings and subsets."""
    return hashlib.sha1((problem + "\n" + solution).encode("utf-8", "replace")).hexdigest()[:12]
