"""Synthetic run folders for the analysis tests: planted effects and planted noise, written as the trainer writes."""

import json

import numpy as np

from rlvr_utils.study.frames import load_grid
from rlvr_utils.study.perseed import run_deltas
from rlvr_utils.core.files import append_jsonl, atomic_write_text, jsonl_text
from rlvr_utils.core.runs import RunDir
from rlvr_utils.study.migrate import per_problem_counts


def write_eval(run: RunDir, step: int, recs: list[dict]) -> None:
    """An evaluation's sample records, and its eval.jsonl row's per-problem counts of them, as the trainer writes
    both (the row at `step` keeps its other fields; a bare one is added where there is none)."""
    run.write_samples(f"eval_{step:05d}", recs)
    rows = run.read_evals()
    row = next((r for r in rows if r["step"] == step), {"step": step})
    rows = sorted([r for r in rows if r["step"] != step] + [{**row, "per_problem": per_problem_counts(recs)}],
                  key=lambda r: r["step"])
    atomic_write_text(run.evals, jsonl_text(rows))


def _ev(step: int, p4: float) -> dict:
    s = lambda v: {"mean": v, "lo": v - 0.05, "hi": v + 0.05, "n": 40}
    return {"step": step, "greedy": s(p4 / 2), "pass_at_k": {"1": s(p4 / 2), "4": s(p4)}, "response_len_mean": 50.0}


def _grid(root, effect: dict, noise: float, seed: int = 0, objectives: tuple = ("psr", "nsr"), shared: float = 0.0):
    """2 rungs (warm starts n=0 and n=1000) x objectives x 4 seeds; pass@4 final = base + effect + noise,
    plus, with `shared`, a per-seed shift every objective of that seed gets (as a shared evaluation seed does)."""
    rng = np.random.default_rng(seed)
    for n in (0, 1000):
        rung = root / "rungs" / f"n{n}"
        rung.mkdir(parents=True)
        (rung / "warmstart.json").write_text(json.dumps({"n": n}))
        bases = 0.3 + 0.1 * (n > 0) + rng.normal(0, 0.02, size=4)  # one evaluation of the base per seed
        shifts = rng.normal(0, shared, size=4) if shared else np.zeros(4)
        for arm in objectives:  # an objective's name, or (name, its knobs) for one arm of a sweep
            obj, knobs = (arm, {}) if isinstance(arm, str) else arm
            tag = obj + "".join(f"__{k}{v:g}" for k, v in knobs.items())
            for s in range(4):
                run = RunDir(root / "grid" / f"n{n}__{tag}__s{s}")
                run.path.mkdir(parents=True)
                run.config.write_text(json.dumps({"model": str(rung), "objective": obj, "seed": s, "lam": 0.1, **knobs}))
                base = bases[s]
                after = base + shifts[s] + effect.get((n, tag), 0.0) + rng.normal(0, noise)
                append_jsonl(run.evals, [_ev(0, base), _ev(6, after)])
    return load_grid(root / "grid")


def _recs(solved: int, problems: int = 40):
    return [{"protocol": "sampled", "problem_id": f"p{i}", "sample": j, "status": "correct" if i < solved else "incorrect"}
            for i in range(problems) for j in range(4)]


def _p1_row(step: int, v: float) -> dict:
    m = {"mean": v, "lo": v, "hi": v, "n": 64}
    return {"step": step, "greedy": m, "pass_at_k": {"1": m}}


def _counts_recs(correct: list[int]) -> list[dict]:
    """4 samples of each problem, the first correct[i] of problem i correct."""
    return [{"protocol": "sampled", "problem_id": f"p{i}", "sample": j, "status": "correct" if j < c else "incorrect"}
            for i, c in enumerate(correct) for j in range(4)]


def _seeded_grid(root, solved_after) -> list:
    """2 rungs x {psr, nsr} x 4 seeds on 64 problems x 4 samples; `solved_after(rng, seed, objective)` -> per-problem
    count of correct samples (0-4) at the last evaluation; every base solves 2 of 4 samples of each."""
    rng = np.random.default_rng(0)
    for n in (0, 1000):
        rung = root / "rungs" / f"n{n}"
        rung.mkdir(parents=True)
        (rung / "warmstart.json").write_text(json.dumps({"n": n}))
        for obj in ("psr", "nsr"):
            for s in range(4):
                run = RunDir(root / "grid" / f"n{n}__{obj}__s{s}")
                run.path.mkdir(parents=True)
                run.config.write_text(json.dumps({"model": str(rung), "objective": obj, "seed": s}))
                after = solved_after(rng, s, obj)
                append_jsonl(run.evals, [_p1_row(0, 0.5), _p1_row(6, float(np.mean(after)) / 4)])  # as the samples say
                write_eval(run, 0, _counts_recs([2] * 64))
                write_eval(run, 6, _counts_recs(after))
    return run_deltas(load_grid(root / "grid"))
