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


def _completion(a: int, b: int, answer: int) -> str:
    return f"{a} + {b} = {answer}\nThe answer is $\\boxed{{{answer}}}$."


def finished_cell(root, name: str = "fam-1m-2M__nsr__s0", objective: str = "nsr", hostile: dict | None = None):
    """A finished cell of a grid, written as the trainer writes it: one training step of 2 prompts x 4 samples and
    evaluations at steps 0 and 2 of 4 problems x 4 samples (plus the greedy answer), completions ending in
    `$\\boxed{N}$`. `hostile`: extra config values and sample fields (text a tampered run folder could hold)."""
    hostile = hostile or {}
    run = RunDir(root / name)
    run.path.mkdir(parents=True)
    run.config.write_text(json.dumps({"model": "family:size=1m,tokens=2000000", "objective": objective, "seed": 0,
                                      "data": "gen:chain?difficulty=2&n=4000", "prompt": "plain", "extraction": "boxed",
                                      "levels": "", "steps": 2, "eval_samples": 4, "eval_problems": 4,
                                      "rollouts_per_prompt": 4, "max_tokens": 64, **hostile.get("config", {})}))
    extra = hostile.get("sample", {})

    def rec(i: int, j: int, ok: bool, **kw) -> dict:
        a, b = i + 2, j + 3
        return {"problem_id": f"p{i}", "sample": j, "level": "Difficulty 2", "subject": "chain",
                "problem": f"Compute {a} + {b}.", "completion": _completion(a, b, a + b if ok else a + b + 1),
                "extracted": str(a + b if ok else a + b + 1), "gold": str(a + b), "status": "correct" if ok else "incorrect",
                "reward": float(ok), "finish_reason": "stop", "response_tokens": 20, **kw, **extra}

    adv = {"nsr": -1.0, "psr": 1.0}[objective]
    run.write_samples("step_00001", [rec(i, j, j < 2 * i, step=1, advantage=adv, kept=(j < 2 * i) == (objective == "psr"))
                                     for i in range(2) for j in range(4)])
    for step, solved in ((0, [0, 1, 2, 1]), (2, [1, 2, 4, 3])):
        greedy = [rec(i, 0, solved[i] > 0, protocol="greedy") for i in range(4)]
        append_jsonl(run.evals, [_p1_row(step, sum(solved) / 16)])
        write_eval(run, step, greedy + [rec(i, j, j < solved[i], protocol="sampled") for i in range(4) for j in range(4)])
    append_jsonl(run.metrics, [{"step": s, "reward_mean": 0.25 * s, "kept": 4, "samples": 8, "loss": 0.1, "time_total": 1.0}
                               for s in (1, 2)])
    run.set_status("done")
    return run.path


RUNGS = {"1000000": 0.1, "2000000": 0.3, "4000000": 0.6}  # tokens -> the base's pass@1


def write_controls_grid(root, slope_true=-0.1, builds=3, seeds=3, problems=40, n=64, seed=0):
    """A controls grid (rungs 1m/1M, 1m/2M, 1m/4M x builds x seeds x PSR/NSR) with NSR − PSR planted as
    slope_true x the rung's base pass@1, per-problem counts at steps 0 and 20, and a training journal per run
    (NSR keeps 8 samples a step for PSR's 1 and moves as far)."""
    rng = np.random.default_rng(seed)
    prob = rng.normal(0, 0.05, problems)
    for tokens, p0 in RUNGS.items():
        for b in range(builds):
            pb = p0 + rng.normal(0, 0.03)  # a build's own skill
            for s in range(seeds):
                base = rng.binomial(n, np.clip(pb + prob, 0.01, 0.99))
                for obj, shift in (("psr", 0.0), ("nsr", slope_true * p0 + rng.normal(0, 0.01))):
                    final = rng.binomial(n, np.clip(pb + prob + shift + 0.05, 0.01, 0.99))
                    run = RunDir(root / f"r{tokens}-b{b}-{obj}-s{s}")
                    run.path.mkdir(parents=True)
                    run.config.write_text(json.dumps({"model": f"family:size=1m,tokens={tokens},seed={b}",
                                                      "objective": obj, "seed": s,
                                                      "data": "gen:column?difficulty=2&n=4000"}))
                    run.set_status("done")
                    rows = [{"step": step, "per_problem": {"n": n, "correct": {f"p{i}": int(c[i]) for i in range(problems)}},
                             "protocols": {"paper": {"per_problem": {"n": n, "correct": {"p0": 1, "p1": 2}}}}}
                            for step, c in ((0, base), (20, final))]
                    append_jsonl(run.evals, rows)
                    kept = 8 if obj == "nsr" else 1
                    append_jsonl(run.metrics, [{"step": t, "kept": kept, "clip_frac": 0.0, "kl_to_init": 0.01 * t,
                                                "samples_trained_total": kept * t} for t in (1, 2)])
