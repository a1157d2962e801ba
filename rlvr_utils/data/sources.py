"""MATH loading (JSONL, official layout, Hugging Face hub), gold answers and stratified sampling.

Every source becomes the same record: id, problem, solution, level, type (subject), gold, and the
source's own `answer` column when it has one (kept only to report disagreements: the gold is always
the last box of the solution).
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from ..core.files import atomic_write_text, iter_json_lines, read_lines
from ..core.grading import last_boxed
from .problems import DataError, MathProblem, problem_id
from ..core.prompts import render
from ..core.stats import largest_remainder
from .tasks import is_task_spec, load_task, task_parts

HUB_DATASET = "EleutherAI/hendrycks_math"
_HUB_CONFIGS = (
    "algebra", "counting_and_probability", "geometry", "intermediate_algebra",
    "number_theory", "prealgebra", "precalculus",
)
REQUIRED_FIELDS = ("problem", "solution", "level", "type")


def make_record(row: dict, where: str) -> MathProblem:
    missing = [f for f in REQUIRED_FIELDS if not isinstance(row.get(f), str)]
    if missing:
        raise DataError(f"{where}: missing or non-string field(s) {', '.join(missing)}")
    answer = row.get("answer")
    return MathProblem(
        id=row.get("id") or problem_id(row["problem"], row["solution"]),
        problem=row["problem"],
        solution=row["solution"],
        level=row["level"],
        type=row["type"],
        gold=row["gold"] if "gold" in row else last_boxed(row["solution"]),
        answer=answer if isinstance(answer, str) else None,
    )


def _read_jsonl(path: Path) -> Iterator[MathProblem]:
    for n, line in iter_json_lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: invalid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
        yield make_record(row, f"{path}:{n}")


def _read_official_dir(root: Path, split: str) -> Iterator[MathProblem]:
    files = sorted((root / split).glob("*/*.json"))
    if not files:
        raise DataError(f"{root}: no {split}/<subject>/<n>.json files (official MATH layout)")
    for p in files:
        try:
            row = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{p}:{e.lineno}: invalid JSON ({e.msg})") from None
        yield make_record(row, str(p))


def _read_official_tar(path: Path, split: str) -> Iterator[MathProblem]:
    with tarfile.open(path) as tar:
        members = sorted(
            (m for m in tar.getmembers() if m.isfile() and m.name.endswith(".json")
             and f"/{split}/" in "/" + m.name),
            key=lambda m: m.name,
        )
        if not members:
            raise DataError(f"{path}: no */{split}/<subject>/<n>.json members (official MATH layout)")
        for m in members:
            raw = tar.extractfile(m).read()  # type: ignore[union-attr]
            try:
                row = json.load(io.BytesIO(raw))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}!{m.name}:{e.lineno}: invalid JSON ({e.msg})") from None
            yield make_record(row, f"{path}!{m.name}")


def _read_hub(name: str, split: str) -> Iterator[MathProblem]:
    import datasets  # only users with internet get here

    for config in _HUB_CONFIGS:
        for i, row in enumerate(datasets.load_dataset(name, config, split=split)):
            yield make_record(dict(row), f"{name}/{config}[{split}][{i}]")


def load_math(source: str | Path, split: str = "test") -> list[MathProblem]:
    """Load MATH problems (or generated ones).

    `source` is a generated-task spec `gen:<family>?difficulty=D&n=N&seed=S` (rlvr_utils.data.tasks); a
    .jsonl file; a directory holding `<split>.jsonl` (e.g. ../shared/data/math_subset);
    the official layout `MATH/{train,test}/<subject>/<n>.json` as a directory or .tar/.tar.gz; or
    `hub` / a hub dataset name (default EleutherAI/hendrycks_math, all subjects).
    """
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    s = str(source)
    p = Path(source)
    if is_task_spec(s):
        return load_task(s, split)
    if p.is_file() and s.endswith(".jsonl"):
        rows = _read_jsonl(p)
    elif p.is_file() and (s.endswith(".tar") or s.endswith(".tar.gz") or s.endswith(".tgz")):
        rows = _read_official_tar(p, split)
    elif p.is_dir() and (p / f"{split}.jsonl").is_file():
        rows = _read_jsonl(p / f"{split}.jsonl")
    elif p.is_dir() and (p / split).is_dir():
        rows = _read_official_dir(p, split)
    elif p.exists():
        raise DataError(
            f"{p}: unknown layout; expected a .jsonl file, a directory with {split}.jsonl, "
            f"the official MATH/{split}/<subject>/<n>.json layout, or a .tar/.tar.gz of it"
        )
    elif is_hub_name(s):
        rows = _read_hub(HUB_DATASET if s == "hub" else s, split)
    else:
        raise DataError(f"{source}: no such file or directory (nor a hub dataset name like {HUB_DATASET})")
    return list(rows)


def is_hub_name(source: str) -> bool:
    """`hub`, or what reads as a hub dataset's owner/name rather than a path (`../x/y`, `/x/y`, `~/x` are paths)."""
    return source == "hub" or (source.count("/") == 1 and not source.startswith((".", "/", "~")))


def check_source(source: str) -> None:
    """What is wrong with a data source, said before anything loads: a task spec that does not parse, a path
    that does not exist (a hub name passes: only the hub can tell), a JSONL line that is not UTF-8 or is oversized
    (`read_lines`: a scan, before a run folder is claimed)."""
    if is_task_spec(source):
        task_parts(source)
    elif not (Path(source).exists() or is_hub_name(source)):
        raise DataError(f"data={source!r}: no such file or directory (nor a hub dataset name like {HUB_DATASET})")
    path = Path(source)
    for f in sorted(path.glob("*.jsonl")) if path.is_dir() else [path] if path.suffix == ".jsonl" else []:
        for _ in read_lines(f):
            pass


def _by_subject(problems: list[MathProblem]) -> dict[str, list[MathProblem]]:
    by_type: dict[str, list[MathProblem]] = {}
    for p in problems:
        by_type.setdefault(p.type, []).append(p)
    return by_type


def stratified_sample(problems: list[MathProblem], ratio: float, seed: int = 42) -> list[MathProblem]:
    """Keep round(ratio * n_subject) problems of each subject, chosen with a seeded shuffle."""
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    by_type = _by_subject(problems)
    rng = random.Random(seed)
    out: list[MathProblem] = []
    for subject in sorted(by_type):
        group = sorted(by_type[subject], key=lambda p: p.id)
        rng.shuffle(group)
        out.extend(group[: max(1, round(ratio * len(group)))])
    return out


def stratified_subset(problems: list[MathProblem], n: int, seed: int = 0) -> list[MathProblem]:
    """Exactly min(n, len) problems, subjects in proportion to their share (largest remainder)."""
    if n >= len(problems):
        return list(problems)
    by_type = _by_subject(problems)
    rng = random.Random(seed)
    take = largest_remainder({t: len(g) for t, g in by_type.items()}, n)
    out: list[MathProblem] = []
    for subject in sorted(by_type):
        group = sorted(by_type[subject], key=lambda p: p.id)
        rng.shuffle(group)
        out.extend(group[: take[subject]])
    return out


def count_table(problems: Iterable[MathProblem]):
    """Subject × level counts as a pandas DataFrame (with totals)."""
    import pandas as pd

    c = Counter((p.type, p.level) for p in problems)
    df = pd.Series(c).unstack(fill_value=0) if c else pd.DataFrame()
    if len(df):
        df = df.sort_index().reindex(sorted(df.columns), axis=1)
        df["total"] = df.sum(axis=1)
        df.loc["total"] = df.sum(axis=0)
    return df


@dataclass(frozen=True)
class GoldReport:
    n: int
    no_gold: list[str]       # ids whose solution has no (or an empty) last box
    disagree: list[tuple[str, str | None, str | None]]  # (id, provided answer, gold)


def check_gold(problems: list[MathProblem]) -> GoldReport:
    """Rows without a gold answer, and rows where the provided `answer` column disagrees with it."""
    no_gold = [p.id for p in problems if not (p.gold or "").strip()]
    disagree = [
        (p.id, p.answer, p.gold) for p in problems
        if p.answer is not None and _squash(p.answer) != _squash(p.gold or "")
    ]
    return GoldReport(len(problems), no_gold, disagree)


def _squash(s: str) -> str:
    return "".join(s.split())


def write_jsonl(problems: Iterable[MathProblem], path: str | Path) -> Path:
    text = "".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in problems)
    return atomic_write_text(path, text)


# ------------------------------------------------------------------------------ what a run trains on

EVAL_SUBSET_SEED = 1234  # the same eval problems for every cell of a grid, whatever its seed


@dataclass
class Prepared:
    train: list[MathProblem]
    train_prompts: list[list[int]]
    eval: list[MathProblem]
    eval_prompts: list[list[int]]
    dropped: dict


def prepare_data(cfg, tok) -> Prepared:
    """A TrainConfig's train and eval problems: loaded, filtered (gold present, level, prompt length)
    and tokenized with its prompt template."""
    dropped: Counter = Counter()

    def keep(problems: list[MathProblem], levels: set[str]) -> tuple[list, list]:
        out, ids = [], []
        for p in problems:
            if not (p.gold or "").strip():
                dropped["no_gold"] += 1
                continue
            if levels and p.level not in levels:
                continue
            t = render(tok, p.problem, cfg.prompt)
            if len(t) > cfg.max_prompt_tokens:
                dropped["prompt_too_long"] += 1
                continue
            out.append(p)
            ids.append(t)
        return out, ids

    levels = {x.strip() for x in cfg.levels.split(",") if x.strip()}
    train, train_ids = keep(load_math(cfg.data, cfg.train_split), levels)
    if not train:
        raise ValueError(f"no training problems left in {cfg.data} [{cfg.train_split}] after filters "
                         f"(levels={cfg.levels!r}, max_prompt_tokens={cfg.max_prompt_tokens})")
    ev, ev_ids = [], []
    if cfg.eval_problems:
        pool, pool_ids = keep(load_math(cfg.data, cfg.eval_split), levels)
        ids_of = {p.id: t for p, t in zip(pool, pool_ids)}
        ev = stratified_subset(pool, cfg.eval_problems, EVAL_SUBSET_SEED)
        ev_ids = [ids_of[p.id] for p in ev]
    return Prepared(train, train_ids, ev, ev_ids, dict(dropped))


class Cursor:
    """Epoch-wise seeded permutation of the training problems; its state is one integer."""

    def __init__(self, n: int, seed: int, consumed: int = 0):
        self.n, self.seed, self.consumed = n, seed, consumed

    def take(self, k: int) -> list[int]:
        import numpy as np

        out = []
        for _ in range(k):
            epoch, pos = divmod(self.consumed, self.n)
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            out.append(int(perm[pos]))
            self.consumed += 1
        return out
