"""Pure functions from run files to tables and frames (no notebook outputs are ever read)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.objectives import OBJECTIVES, knobs
from ..core.runs import RunDir
from .safehtml import NO_MATH, esc
from ..core.stats import seed_ci


@dataclass
class Run:
    name: str
    path: Path
    config: dict
    status: dict
    metrics: pd.DataFrame
    evals: pd.DataFrame
    arm: str = ""  # the objective and its knobs that vary among a grid's runs of it (`load_grid`)
    problems: list[str] = field(default_factory=list)  # torn or missing records (`RunDir.problems`)

    @property
    def objective(self) -> str:
        """What analysis groups by: the arm where a grid varies a knob (w_reinforce[lam=0.5]), else the objective."""
        return self.arm or self.config.get("objective")

    @property
    def weights(self) -> str | None:
        """The fingerprint of the weights it started from (`models.fingerprint`); None in runs saved before it."""
        return self.config.get("_meta", {}).get("model_fingerprint")

    @property
    def label(self) -> dict:
        c = self.config
        return {"run": self.name, "model": c.get("model"), "objective": self.objective, "seed": c.get("seed"),
                "lam": c.get("lam")}


def load_run(path: str | Path) -> Run:
    """A run's files, read back; a torn last line is left out and named in `problems`, as is a finished
    run's missing step, so a report can say which cells it could not read whole."""
    rd = RunDir(path)
    cfg = rd.saved_config() if rd.config.exists() else {}
    metrics = pd.DataFrame(rd.read_metrics(torn="skip"))
    evals = pd.DataFrame([flatten_eval(e) for e in rd.read_evals(torn="skip")])
    return Run(rd.path.name, rd.path, cfg, rd.status(), metrics, evals, problems=rd.problems())


def load_grid(runs_dir: str | Path) -> list[Run]:
    """Every run folder (one with a config.json) directly under runs_dir, sorted by name."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{runs_dir}: no such runs directory")
    return with_arms([load_run(p) for p in sorted(runs_dir.iterdir()) if (p / "config.json").exists()])


def with_arms(runs: list[Run]) -> list[Run]:
    """Name each run's arm: its objective, plus the objective's knobs (`objectives.knobs`) whose values
    differ among these runs of it. A lam sweep of W-REINFORCE is then two arms, never one pooled cell;
    a knob nobody varied stays out of the name (psr's config also carries a lam it never reads)."""
    by_obj: dict[str, list[Run]] = {}
    for r in runs:
        by_obj.setdefault(r.config.get("objective"), []).append(r)
    for obj, group in by_obj.items():
        known = knobs(obj) if obj in OBJECTIVES else {}
        vals = [{k: (r.config.get("objective_args") or {}).get(k, r.config.get(k, d)) for k, d in known.items()}
                for r in group]
        varying = [k for k in known if len({json.dumps(v[k], sort_keys=True) for v in vals}) > 1]
        for r, v in zip(group, vals):
            if varying:
                r.arm = f"{obj}[" + ",".join(f"{k}={v[k]:g}" if isinstance(v[k], float) else f"{k}={v[k]}"
                                             for k in varying) + "]"
    return runs


def flatten_eval(e: dict) -> dict:
    """One eval.jsonl row -> flat columns (greedy, greedy_lo, greedy_hi, pass@k..., t1)."""
    out = {"step": e["step"]}
    for key in ("greedy", "t1"):
        if key in e:
            out[key], out[f"{key}_lo"], out[f"{key}_hi"] = e[key]["mean"], e[key]["lo"], e[key]["hi"]
    for k, v in e.get("pass_at_k", {}).items():
        out[f"pass@{k}"], out[f"pass@{k}_lo"], out[f"pass@{k}_hi"] = v["mean"], v["lo"], v["hi"]
    out["response_len_mean"] = e.get("response_len_mean", np.nan)
    return out


def status_table(runs: list[Run]) -> pd.DataFrame:
    """Each run's state, steps done and minutes of work: its steps' and evaluations' own timings, so a run
    resumed across sessions counts each step once (start-up and a copied step-0 evaluation add ~0)."""
    return pd.DataFrame([{**r.label, "state": r.status.get("state"), "steps": len(r.metrics),
                          "minutes": round(RunDir(r.path).work_seconds() / 60, 1),
                          "error": r.status.get("error", "")[:120]} for r in runs])


def metrics_frame(runs: list[Run]) -> pd.DataFrame:
    frames = [r.metrics.assign(**r.label) for r in runs if len(r.metrics)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def eval_frame(runs: list[Run]) -> pd.DataFrame:
    frames = [r.evals.assign(**r.label) for r in runs if len(r.evals)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def accuracy_tables(evals: pd.DataFrame, metric: str = "greedy", every: int = 10) -> dict[str, pd.DataFrame]:
    """The original study's tables: per objective, accuracy per model (rows) at steps 0, every, 2*every, ...

    Cells are "mean ± half-width" of the 95% t-interval over seeds when there are several, else the
    bootstrap CI over problems of one run. {} where no run evaluated `metric` (t1 with eval_t1=False).
    """
    if evals.empty or metric not in evals:
        return {}
    out = {}
    steps = sorted(s for s in evals["step"].unique() if s % every == 0 or s == evals["step"].max())
    for obj, g in evals[evals["step"].isin(steps)].groupby("objective"):
        def cell(x: pd.DataFrame) -> str:
            if len(x) > 1:
                m, lo, hi = seed_ci(x[metric])
                # an accuracy lies in [0, 1]: a wider interval says nothing, its half-width would only mislead
                return f"{m:.3f} ± {hi - m:.3f}" if hi - lo <= 1 else f"{m:.3f} (interval wider than [0, 1])"
            r = x.iloc[0]
            return f"{r[metric]:.3f} [{r[f'{metric}_lo']:.3f}, {r[f'{metric}_hi']:.3f}]"

        t = g.groupby(["model", "step"]).apply(cell, include_groups=False).unstack("step")
        t.columns = [f"step {c}" for c in t.columns]
        out[str(obj)] = t
    return out


def smooth(df: pd.DataFrame, cols: list[str], window: int = 2, by: tuple[str, ...] = ("run",)) -> pd.DataFrame:
    """Moving average of `cols` within each run (window 2, as the original study's curves)."""
    df = df.sort_values([*by, "step"]).copy()
    for c in cols:
        df[c] = df.groupby(list(by))[c].transform(lambda s: s.rolling(window, min_periods=1).mean())
    return df


def final_accuracy(evals: pd.DataFrame, metric: str = "greedy") -> pd.DataFrame:
    """Each run's last evaluation, with its base (step 0) value and the change."""
    if evals.empty:
        return evals
    last = evals.loc[evals.groupby("run")["step"].idxmax()]
    base = evals[evals["step"] == 0].set_index("run")[metric]
    last = last.assign(base=last["run"].map(base), delta=lambda d: d[metric] - d["base"])
    return last.reset_index(drop=True)


def pass_at_k_frame(evals: pd.DataFrame) -> pd.DataFrame:
    """Long frame of pass@k for the base model (step 0, pooled over runs) and each objective's last step.

    The CI is over seeds (t-based) when a group has several runs, else that run's bootstrap over
    problems; the `ci` column says which (never an average of per-run bounds)."""
    if evals.empty:
        return evals
    ks = sorted(int(c.split("@")[1]) for c in evals.columns if c.startswith("pass@") and c.count("_") == 0)
    rows = []
    base = evals[evals["step"] == 0]
    last = evals.loc[evals.groupby("run")["step"].idxmax()]
    for label, frame in [("base", base)] + [(o, g) for o, g in last.groupby("objective")]:
        for model, g in frame.groupby("model"):
            for k in ks:
                if len(g) > 1:
                    m, lo, hi = seed_ci(g[f"pass@{k}"])
                    ci = f"seeds (t, n={len(g)})"
                else:
                    m, lo, hi = (float(g[f"pass@{k}{x}"].iloc[0]) for x in ("", "_lo", "_hi"))
                    ci = "problems (bootstrap)"
                rows.append({"model": model, "policy": label, "k": k, "pass@k": m, "lo": lo, "hi": hi, "ci": ci})
    return pd.DataFrame(rows)


def load_samples(run_dir: str | Path, source: str = "*") -> pd.DataFrame:
    """A run's per-sample records in one frame: every file, or one `source` (`step`, `eval`)."""
    rd = RunDir(run_dir)
    frames = []
    for f in sorted(rd.samples.glob(f"{source}_*.jsonl")) if rd.samples.exists() else []:
        kind, num = f.stem.split("_", 1)
        rows = rd.read_samples(f.stem)
        if rows:
            frames.append(pd.DataFrame(rows).assign(source=kind, step=int(num)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def eval_counts(run_dir: str | Path) -> pd.DataFrame:
    """(step, problem_id) -> sampled answers n and correct c at step 0 and at the last evaluation, from the eval
    rows' `per_problem` counts; empty where those rows lack them (runs saved before them:
    `python -m rlvr_utils.study.migrate`)."""
    f = RunDir(run_dir).evals
    # an atomic rewrite is a new inode: the cache sees it; every k and contrast reads a run's files once
    st = f.stat() if f.exists() else None
    return _eval_counts(str(run_dir), (st.st_size, st.st_ino, st.st_mtime_ns) if st else ())


@functools.lru_cache(maxsize=1024)
def _eval_counts(run_dir: str, stamp: tuple) -> pd.DataFrame:
    rows = RunDir(run_dir).read_evals(torn="skip")
    ends = [r for r in rows if r["step"] in (0, max(x["step"] for x in rows))] if rows else []
    if not ends or not all("per_problem" in r for r in ends):
        return pd.DataFrame(columns=["n", "c"], index=pd.MultiIndex.from_tuples([], names=["step", "problem_id"]))
    return pd.DataFrame([(r["step"], pid, r["per_problem"]["n"], c) for r in ends
                         for pid, c in r["per_problem"]["correct"].items()],
                        columns=["step", "problem_id", "n", "c"]).set_index(["step", "problem_id"])


def base_success(records: pd.DataFrame, by: str = "level") -> pd.DataFrame:
    """Share of correct samples per level/subject (e.g. from an evaluation at step 0)."""
    if records.empty:
        return records
    return (records.assign(correct=records["status"] == "correct")
            .groupby(by)["correct"].agg(["mean", "count"]).rename(columns={"mean": "success", "count": "samples"}))


def run_settings(runs: list[Run]) -> pd.DataFrame:
    """The config fields that matter for reading the results, one row per distinct setting."""
    keys = ["model", "steps", "prompts_per_step", "rollouts_per_prompt", "max_tokens", "lr", "temperature",
            "levels", "prompt", "extraction", "loss_agg", "loss_norm", "mini_batches", "eval_problems",
            "eval_samples", "engine"]
    rows = [{k: r.config.get(k) for k in keys} for r in runs]
    return pd.DataFrame(rows).drop_duplicates().reset_index(drop=True) if rows else pd.DataFrame()


def describe_settings(runs: list[Run]) -> str:
    """One paragraph (HTML, every value escaped: a config is untrusted text) naming what a reader must know to read
    the numbers, grading policy first."""
    if not runs:
        return "<p>No runs found.</p>"
    c = [r.config for r in runs]
    v = lambda k: f"<code>{esc(', '.join(sorted({str(x.get(k)) or '(all)' for x in c})))}</code>"  # noqa: E731
    t1 = any(x.get("eval_t1", True) for x in c)
    return (f'<p class="{NO_MATH}"><b>Grading policy: {v("extraction")}</b> (prompt {v("prompt")}). Data {v("data")}, '
            f"training levels {v('levels')}; {v('steps')} steps of {v('prompts_per_step')} prompts × "
            f"{v('rollouts_per_prompt')} rollouts, at most {v('max_tokens')} tokens, T={v('temperature')}, "
            f"lr={v('lr')}; loss {v('loss_agg')} normalised over {v('loss_norm')} samples. Evaluation: "
            f"{v('eval_problems')} fixed test problems, greedy, and pass@k from {v('eval_samples')} samples at "
            f"T={v('eval_temperature')}" + (", and 1 sample at T=1.0" if t1 else "") + ".</p>")
