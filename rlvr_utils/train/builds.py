"""What a run shares with its siblings (the runs beside it in a grid's folder): the base it starts from.

- The step-0 evaluation: a grid's objectives start from the same rung with the same seed, so only one
  of them samples the base and the others copy its evaluation (`shared_base_eval`).
- The build: a rung rebuilt on another CPU keeps its name and recipe but not its bits, nor always its
  prior; a run must not mix builds silently (`check_same_weights`, `check_sibling_builds`).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

from ..core.config import TRAINING_ONLY, TrainConfig
from ..core.files import DamagedFile, wait_lock
from ..priors.recipes import same_model
from ..core.runs import RunDir


def base_eval_key(saved: dict) -> dict:
    """What a run's step-0 evaluation depends on, from its saved config.json: every setting but the
    training-only ones (`config.TRAINING_ONLY`), the evaluation's length, and what actually ran (`_meta`): the
    weights' fingerprint (a rung rebuilt elsewhere keeps its path), the resolved engine, package versions (the
    grader's among them), device, precision and CPU kind. Threads are left out: they change rounding
    order, not what is sampled from."""
    meta, hw = saved.get("_meta", {}), saved.get("_meta", {}).get("hardware", {})
    key = {k: v for k, v in saved.items() if k not in ("_meta", "eval_max_tokens") and k not in TRAINING_ONLY}
    key["eval_length"] = TrainConfig.from_dict({k: v for k, v in saved.items() if k != "_meta"}, strict=False).eval_length
    return {**key, "engine": meta.get("engine") or saved.get("engine"),  # resolved (auto -> vllm | hf) where saved
            **{k: meta.get(k) for k in ("model_path", "model_fingerprint", "versions")},
            **{k: hw.get(k) for k in ("device", "precision", "name", "bf16_native")}}


def find_base_eval(run: RunDir, key: dict, also: Path | None = None) -> tuple[dict, list[dict] | None, str] | None:
    """A sibling run (or one in `also`, another arm's folder) whose step-0 evaluation this run would repeat: (its
    eval row, its sample records, its folder name), or None. `key`: the run's `base_eval_key`. Call under
    `base_eval_lock`. Its row must carry the per-problem counts the analysis reads; a sibling whose sample files
    stayed on another machine (a study commits its rows, not its samples) still serves, its samples then None."""
    others = sorted(run.path.parent.iterdir()) + (sorted(also.iterdir()) if also is not None else [])
    for other in others:
        o = RunDir(other)
        if other == run.path or not o.config.exists():
            continue
        try:
            if base_eval_key(o.saved_config()) != key:
                continue
            row = next((r for r in o.read_evals() if r["step"] == 0), None)
            has_samples = (o.samples / "eval_00000.jsonl").exists()
            if row is not None and "per_problem" in row:
                name = other.name if other.parent == run.path.parent else str(other)
                return row, o.read_samples("eval_00000") if has_samples else None, name
        except (OSError, ValueError, KeyError, TypeError, DamagedFile):
            continue  # a folder mid-write, damaged, or not a run: evaluate instead
    return None


def base_eval_lock(run: RunDir, key: dict, log: Callable[[str], None] = print, where: Path | None = None):
    """Held while a run looks for, or makes, its step-0 evaluation: cells that start side by side (a
    Ray grid) with the same base (`key`) sample it once; the others wait, then copy it. `where`: the folder
    holding the lock (the `base_from` arm's, so that arms running at once share it too; default the run's)."""
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return wait_lock((where or run.path.parent) / f".base-eval-{digest}.lock", "the base's step-0 evaluation", log)


def shared_base_eval(run: RunDir, evaluate: Callable[[], tuple[dict, list[dict]]], log: Callable[[str], None]) -> dict:
    """Write the run's step-0 evaluation: a sibling's copy where one sampled the same base with the same seed
    and settings (its row says `reused_from`), else `evaluate()`. Returns the row written."""
    saved = run.saved_config()
    key, also = base_eval_key(saved), (Path(saved["base_from"]) if saved.get("base_from") else None)
    with base_eval_lock(run, key, log, also):  # held until written: a sibling waiting on it then finds it
        t0 = time.perf_counter()
        found = find_base_eval(run, key, also)
        if found:
            row, recs, src = found
            row = {**{k: v for k, v in row.items() if k not in ("step", "seconds")}, "reused_from": src}
            log(f"eval step 0: reusing {src}'s (same model, seed and evaluation settings)")
        else:
            row, recs = evaluate()
        return run.write_eval(0, row, recs, time.perf_counter() - t0)


def check_same_weights(run: RunDir, model: str, saved: str | None, now: str | None) -> None:
    """A resumed run must start from the weights it started from: a rung rebuilt on another machine keeps
    its name and path but not its bits, and its rows would then mix two models under one config."""
    if saved and now and saved != now:
        raise ValueError(f"{run.config}: this run started from {model!r} with weights {saved}, but {model!r} now "
                         f"resolves to weights {now} (rebuilt on another machine?). Its step-0 evaluation and "
                         f"checkpoints belong to the old weights: remove {run.path} to run it afresh on the new ones.")


def check_sibling_builds(run: RunDir, model: str, path: str, now: str | None, allow: bool,
                         log: Callable[[str], None]) -> dict[str, list[str]]:
    """A new run's weights against those its siblings (same folder, same model) ran on: refused where none of
    them ran on these, unless `allow`. Returns the siblings' other builds, {fingerprint: runs}, for its config."""
    # A rung rebuilt on another CPU keeps its name and recipe but not its bits, nor always its prior: cells of
    # one rung would start from different models, and their comparisons would carry the difference.
    seen: dict[str, list[str]] = {}
    for other in sorted(run.path.parent.glob("*/config.json")):
        try:
            saved = RunDir(other.parent).saved_config()
        except (OSError, ValueError, DamagedFile):
            continue  # mid-write, damaged or not a run: it ran on no build this run can compare with
        fp = saved.get("_meta", {}).get("model_fingerprint") if isinstance(saved, dict) else None
        if other.parent != run.path and fp and same_model(saved.get("model"), model):
            seen.setdefault(fp, []).append(other.parent.name)
    others = {fp: names for fp, names in seen.items() if fp != now}
    if now is None or not others:
        return {}
    ran = "; ".join(f"{fp} ({', '.join(names)})" for fp, names in others.items())
    msg = (f"{run.path}: {model!r} resolves to {path} with weights {now}, but runs of it beside this one ran on "
           f"other weights: {ran}. Rebuilt on another machine? Comparisons with them would carry the difference.")
    if now not in seen and not allow:
        raise ValueError(msg + f" Restore the old build at {path}, or pass --allow-new-build (`rlvr train` or "
                         f"`rlvr grid`) to go on; the run's config then names the other builds.")
    # once a build is among the siblings', mixing was chosen: later runs on it go on, and say so
    log("warning: " + msg + " Going on" + (f" (as {', '.join(seen[now])} did)." if now in seen else "."))
    return others
