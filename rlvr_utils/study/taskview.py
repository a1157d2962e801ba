"""What notebook 01 shows of the study's task and its prior axis: a generated task's problems with their worked
solutions, what its difficulty knob does, and the family ladder's measured priors (a table from `prior.json`s)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.config import default_data
from ..priors.measure import ladder_table
from ..data.tasks import generate, load_task, task_parts


def examples(spec: str, n: int = 5, split: str = "train") -> pd.DataFrame:
    """The first `n` problems of a generated task's split, with the worked solution the generator wrote."""
    return pd.DataFrame([{"problem": p.problem, "worked solution": p.solution, "answer": p.gold}
                         for p in load_task(spec, split)[:n]])


def difficulty_ladder(spec: str, difficulties: tuple[int, ...] = (1, 2, 3, 4, 5), n: int = 500) -> pd.DataFrame:
    """The task family at each difficulty: one example, its solution's steps, and how large answers get."""
    family, p = task_parts(spec)[0]  # a mixed task: its first part's family
    rows = []
    for d in difficulties:
        probs = generate(family, min(n, 150) if d == 1 else n, d, p["seed"])  # difficulty 1 has only ~200 problems
        answers = pd.Series([abs(int(q.gold)) for q in probs])
        rows.append({"difficulty": d, "example": probs[0].problem, "solution steps": probs[0].solution.count("\n"),
                     "median |answer|": int(answers.median()), "largest |answer|": int(answers.max())})
    return pd.DataFrame(rows)


def family_ladder(root: str | Path) -> str:
    """The family's rungs under `root` (a cache such as runs/family-rungs) as markdown, with their measured priors."""
    rungs = sorted(Path(root).glob("*/t*"))
    return ladder_table(rungs) if rungs else f"No family rungs under {root} yet (`rlvr family`, or `make study` builds them)."


def source_of(data: str) -> str:
    """Notebook 01's `data`: `study` is the family study's task (the smoke and family profiles'), `math` the default
    MATH data, anything else a task spec or MATH source as it is."""
    from ..grid.profiles import FAMILY_RL

    return FAMILY_RL["data"] if data == "study" else default_data() if data == "math" else data
