"""Run `notebooks/03_train` with papermill over a model x objective x seed (x lambda) grid.

One folder per cell. Completed cells are skipped, a failed cell is recorded and the rest go on,
an interrupted cell resumes from its checkpoint (the notebook calls `train(..., resume=True)`).
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import TrainConfig, coerce
from .runs import RunDir

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_train.ipynb"


@dataclass(frozen=True)
class GridSpec:
    models: tuple[str, ...]
    objectives: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    lams: tuple[float, ...] = (0.1,)
    params: dict[str, Any] = field(default_factory=dict)
    about: str = ""


# Sized from measurements on the 2-core CPU (bench/base_success.py, README): SmolLM2-135M solves no
# MATH problem when it must box its answer (0/576 samples, Levels 1-3, T=1) and ~1.5% of Level 1
# samples when prompted for, and graded on, "The answer is: N" (T=0.6). So the cpu profile trains
# and evaluates on Level 1 with that prompt and the boxed_or_answer_is policy, at T=0.6 and lr 1e-5
# (135M moves little at 1e-6 in 6 steps); each cell took 7.5-8.5 minutes here (make study: 27 min).
PROFILES: dict[str, GridSpec] = {
    "cpu": GridSpec(
        models=("smollm2-135m",), objectives=("psr", "nsr", "w_reinforce"),
        params=dict(steps=6, prompts_per_step=12, rollouts_per_prompt=4, max_tokens=160, temperature=0.6, lr=1e-5,
                    levels="Level 1", prompt="answer_is", extraction="boxed_or_answer_is",
                    eval_every=3, eval_problems=48, eval_samples=4, checkpoint_every=3),
        about="SmolLM2-135M x PSR/NSR/W-REINFORCE, fast CPU settings (make study)",
    ),
    "seed": GridSpec(
        models=("qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b"), objectives=("psr", "nsr", "w_reinforce"),
        params=dict(steps=80, prompts_per_step=32, rollouts_per_prompt=2, max_tokens=512, lr=1e-6,
                    temperature=1.0, eval_every=10, eval_problems=500, eval_samples=8, checkpoint_every=10),
        about="the original small study's grid and hyperparameters (GPU)",
    ),
    "paper": GridSpec(
        models=("qwen2.5-1.5b", "qwen2.5-3b"), objectives=("psr", "nsr", "w_reinforce", "reinforce", "grpo"),
        seeds=(0, 1, 2),
        params=dict(steps=200, prompts_per_step=256, rollouts_per_prompt=8, max_tokens=4096, lr=1e-6,
                    mini_batches=4, temperature=1.0, eval_every=20, eval_problems=500, eval_samples=16,
                    max_model_len=5120, checkpoint_every=10),
        about="Zhu et al. 2025 settings (8 rollouts, lr 1e-6, clipped surrogate with mini-batches; GPU)",
    ),
}


@dataclass(frozen=True)
class Cell:
    name: str
    params: dict[str, Any]


def notebook_parameters(nb: Path = NOTEBOOK) -> dict[str, Any]:
    import papermill

    return papermill.inspect_notebook(str(nb))


def cells(profile: str, sets: dict[str, Any] | None = None, nb: Path = NOTEBOOK) -> list[Cell]:
    """The grid's cells; `sets` override profile values (and may narrow an axis: models=a,b)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    spec = PROFILES[profile]
    sets = dict(sets or {})
    axes = {"models": spec.models, "objectives": spec.objectives, "seeds": spec.seeds, "lams": spec.lams}
    for ax, conv in (("models", str), ("objectives", str), ("seeds", int), ("lams", float)):
        if ax in sets:
            axes[ax] = tuple(conv(x) for x in str(sets.pop(ax)).split(","))
    allowed = set(notebook_parameters(nb)) | {f for f in TrainConfig.__dataclass_fields__}
    unknown = sorted(set(sets) - allowed)
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}: not in {nb.name}'s parameters cell "
                         f"nor TrainConfig")
    params = {**spec.params, **sets}
    short = _model_names(axes["models"])
    out = []
    for model, obj, seed, lam in itertools.product(axes["models"], axes["objectives"], axes["seeds"], axes["lams"]):
        p = {**params, "model": model, "objective": obj, "seed": seed, "lam": lam}
        p = {k: coerce(k, v) if k in TrainConfig.__dataclass_fields__ else v for k, v in p.items()}
        TrainConfig.from_dict(p)  # every cell validated before the first one runs
        name = f"{short[model]}__{obj}__s{seed}" + (f"__lam{lam:g}" if len(axes["lams"]) > 1 else "")
        out.append(Cell(name, p))
    return out


def _model_names(models: tuple[str, ...]) -> dict[str, str]:
    """Folder-safe short names: the registry name or the path's last part; a hash where two collide."""
    import hashlib

    base = {m: Path(m.rstrip("/")).name or m for m in models}
    clash = {b for b in base.values() if list(base.values()).count(b) > 1}
    return {m: (f"{b}-{hashlib.sha1(m.encode()).hexdigest()[:6]}" if b in clash else b) for m, b in base.items()}


def notebook_args(params: dict[str, Any], run_dir: Path, nb_params: set[str]) -> dict[str, Any]:
    """Split cell params into the notebook's own parameters and the `extra` dict for the rest."""
    own = {k: v for k, v in params.items() if k in nb_params}
    extra = {k: v for k, v in params.items() if k not in nb_params}
    return {**own, "extra": extra, "run_dir": str(run_dir), "resume": True}


def run_grid(profile: str, runs: str | Path, sets: dict[str, Any] | None = None, dry_run: bool = False,
             log=print) -> int:
    """Execute every cell not yet done. Returns the number of failed cells."""
    import papermill

    todo = cells(profile, sets)
    runs = Path(runs)
    if dry_run:
        for c in todo:
            log(f"{RunDir(runs / c.name).status().get('state', 'pending'):8s} {c.name}  {json.dumps(c.params)}")
        return 0
    nb_params = set(notebook_parameters())  # inspected once, not per cell
    failed: list[str] = []
    durations: list[float] = []
    for i, c in enumerate(todo):
        run = RunDir(runs / c.name)
        state = run.status().get("state")
        if state == "done":
            log(f"[{i + 1}/{len(todo)}] {c.name}: done, skipped")
            continue
        remaining = len(todo) - i
        eta = f", ETA {_fmt(remaining * sum(durations) / len(durations))}" if durations else ""
        log(f"[{i + 1}/{len(todo)}] {c.name}: {'resuming' if state in ('running', 'failed') else 'running'}"
            f" (done {sum(RunDir(runs / x.name).status().get('state') == 'done' for x in todo)},"
            f" failed {len(failed)}{eta})")
        t0 = time.perf_counter()
        run.path.mkdir(parents=True, exist_ok=True)
        partial = run.path / ".train.partial.ipynb"
        try:
            papermill.execute_notebook(str(NOTEBOOK), str(partial), parameters=notebook_args(c.params, run.path, nb_params),
                                       cwd=str(NOTEBOOK.parent.parent), progress_bar=False, log_output=False,
                                       kernel_name="python3")
            partial.rename(run.notebook)
        except Exception as e:  # noqa: BLE001 - a failed cell must not stop the grid
            if partial.exists():
                partial.rename(run.path / "train.failed.ipynb")
            if run.status().get("state") != "failed":
                run.set_status("failed", error=f"{type(e).__name__}: {str(e)[-1500:]}")
            failed.append(c.name)
            log(f"    {c.name} FAILED: {str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__}")
            continue
        durations.append(time.perf_counter() - t0)
        log(f"    {c.name} done in {_fmt(durations[-1])}")
    log(f"grid {profile}: {len(todo) - len(failed)} done, {len(failed)} failed" +
        (f" ({', '.join(failed)})" if failed else ""))
    return len(failed)


def _fmt(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s"


def main_grid(profile: str, runs: str, sets: dict[str, Any], dry_run: bool) -> int:
    n_failed = run_grid(profile, runs, sets, dry_run, log=lambda m: print(m, flush=True))
    return 1 if n_failed else 0

