"""Bring run folders saved before their rows carried what the analysis reads up to date, once, from their own
sample files: each evaluation row's per-problem counts (`per_problem`, from samples/eval_*.jsonl, as
`evaluate.evaluate` writes them) and each metrics row's distinct answers and responses per prompt (from
samples/step_*.jsonl, as `evaluate.batch_stats` writes them). What sample files cannot give stays absent, as
in a run that never logged it: the KL to the initial policy (the samples hold no log-probs of the initial
policy) and the weights' fingerprint (the weights are not in the folder).

    python -m rlvr_utils.study.migrate runs/prior           # every run folder under it (or one run folder)
    python -m rlvr_utils.study.migrate runs/prior --check   # what it would add, writing nothing

A row that carries a field keeps it, so a second pass adds nothing. Every sample file a run needs is read
before anything is written; a damaged one is named and its run left as it was. A journal is replaced whole,
atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.files import DamagedFile, FolderBusy, atomic_write_text, jsonl_text
from ..core.runs import RunDir


def per_problem_counts(records: list[dict]) -> dict | None:
    """An evaluation's sampled records -> {"n": samples per problem, "correct": {problem_id: correct samples}},
    problems in id order (the order the analysis read them in from the sample files); None without sampled ones."""
    n: dict[str, int] = {}
    correct: dict[str, int] = {}
    for r in records:
        if r.get("protocol") != "sampled":
            continue
        pid = r["problem_id"]
        n[pid] = n.get(pid, 0) + 1
        correct[pid] = correct.get(pid, 0) + (r.get("status") == "correct")
    if not n:
        return None
    if len(set(n.values())) != 1:
        raise ValueError(f"problems were sampled {sorted(set(n.values()))} times: per_problem counts need one n")
    return {"n": next(iter(n.values())), "correct": {pid: correct[pid] for pid in sorted(n)}}


def step_diversity(records: list[dict]) -> dict | None:
    """A training step's rollout records -> the mean over its prompts of the distinct final answers (extracted
    strings; no answer counts as one more) and of the distinct responses; None for no records."""
    groups: list[list[dict]] = []
    for r in records:
        # written prompt by prompt, sample 0 first: a prompt drawn twice in one step (at an epoch's end) is two
        # groups, which its problem_id alone would merge
        if r.get("sample", 0) == 0 or not groups:
            groups.append([])
        groups[-1].append(r)
    if not groups:
        return None
    answers = [len({r.get("extracted") or "" for r in g}) for g in groups]
    responses = [len({r.get("completion", "") for r in g}) for g in groups]
    return {"distinct_answers": sum(answers) / len(answers), "distinct_responses": sum(responses) / len(responses)}


def _added(rd: RunDir, rows: list[dict], field: str, kind: str, derive) -> list[dict]:
    """`rows`, each that lacks `field` merged with what `derive(records)` ({field: ..., ...} or None) finds in its
    samples/<kind>_<step>.jsonl, where that file is here."""
    out = []
    for row in rows:
        f = rd.samples / f"{kind}_{row['step']:05d}.jsonl"
        extra = derive(rd.read_samples(f.stem)) if field not in row and f.exists() else None
        out.append({**row, **extra} if extra else row)
    return out


def _per_problem(records: list[dict]) -> dict | None:
    counts = per_problem_counts(records)
    return {"per_problem": counts} if counts else None


def migrate_run(path: str | Path, write: bool = True) -> list[str]:
    """Add what a run's rows lack and its sample files give; returns what was (or, `write=False`, would be) added."""
    rd = RunDir(path)
    if holder := rd.busy():
        raise FolderBusy(f"{rd.path}: in use ({holder}): migrate a run that is not running")
    evals, metrics = rd.read_evals(), rd.read_metrics()  # a torn or damaged journal raises: repair it first
    new_evals = _added(rd, evals, "per_problem", "eval", _per_problem)
    new_metrics = _added(rd, metrics, "distinct_answers", "step", step_diversity)
    done = []
    if new_evals != evals:
        steps = [r["step"] for r, o in zip(new_evals, evals) if r != o]
        done.append(f"eval.jsonl: per_problem at step {', '.join(map(str, steps))}")
        if write:
            atomic_write_text(rd.evals, jsonl_text(new_evals))
    if new_metrics != metrics:
        steps = [r["step"] for r, o in zip(new_metrics, metrics) if r != o]
        done.append(f"metrics.jsonl: distinct_answers, distinct_responses at {len(steps)} steps")
        if write:
            atomic_write_text(rd.metrics, jsonl_text(new_metrics))
    return done


def run_folders(path: str | Path) -> list[Path]:
    """`path` itself where it is a run folder (it has a config.json), else every run folder directly under it."""
    p = Path(path)
    if (p / "config.json").exists():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such runs directory")
    return sorted(x for x in p.iterdir() if (x / "config.json").exists())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlvr_utils.study.migrate", description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="a grid's folder (every run folder under it) or one run folder")
    ap.add_argument("--check", action="store_true", help="say what would be added; write nothing")
    args = ap.parse_args(argv)
    try:
        for path in args.paths:
            for run in run_folders(path):
                done = migrate_run(run, write=not args.check)
                print(f"{run}: " + ("; ".join(done) if done else "nothing to add"))
    except (ValueError, OSError, DamagedFile, FolderBusy) as e:
        print(f"rlvr: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
