"""The controls study's arms side by side (docs/prereg-controls.md): how much each objective trained in each arm, and
NSR − PSR's slope over the rungs' base skill in each arm and as each arm's difference from the reference arm.

The arms are grids over the same builds, seeds and problems (an arm changes only how the policy is trained), so an
arm's difference from the reference is a per-problem contrast paired by rung, build, seed and problem, analysed as
every other contrast is: builds, seeds within builds and problems random (`slopes.slope`).

`python -m rlvr_utils.study.arms onpolicy=RUNS matched=RUNS offpolicy=RUNS [--protocol paper] [--out ARMS.md]`;
the first arm named is the reference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.files import emit
from ..core.runs import RunDir
from ..core.stats import fmt_interval, ks_for
from ..priors.recipes import rung_of
from .outcomes import base_skill, contrast_long, problem_counts, split_build
from .slopes import slope, slope_span, to_array

# per step, from metrics.jsonl (absent keys: the arm does not draw more than one batch, or trains on-policy)
SIGNAL = {"kept": "samples trained a step", "batches_drawn": "batches drawn a step", "kept_short": "steps short of K",
          "clip_frac": "tokens clipped"}


def training_signal(runs_dir: str | Path) -> pd.DataFrame:
    """Per rung x objective, over its finished runs: the mean per step of each SIGNAL column, and movement per sample
    trained (the final KL to the initial policy per 1,000 samples trained; the family study's confound, issue 38)."""
    rows = []
    for d in sorted(p for p in Path(runs_dir).iterdir() if (p / "config.json").exists()):
        run = RunDir(d)
        metrics = run.read_metrics() if run.status().get("state") == "done" else []
        if not metrics:
            continue
        cfg = run.saved_config()
        m = pd.DataFrame(metrics)
        last = metrics[-1]
        row = {"rung": split_build(rung_of(cfg)[1])[0], "objective": cfg["objective"],
               **{c: float(m[c].mean()) for c in SIGNAL if c in m}}
        trained = last.get("samples_trained_total")
        if trained and "kl_to_init" in last:
            row |= {"kl_to_init": last["kl_to_init"], "kl_per_1k_samples": 1000 * last["kl_to_init"] / trained}
        rows.append(row)
    if not rows:
        raise ValueError(f"{runs_dir}: no finished run with metrics")
    return pd.DataFrame(rows).groupby(["rung", "objective"], sort=False).mean().reset_index()


def _contrast(counts: pd.DataFrame, k: int, rungs: list[str]) -> tuple[list[str], np.ndarray]:
    return to_array(contrast_long(counts, k), "value", rungs=rungs)


def arm_slopes(arms: dict[str, str | Path], protocol: str | None = None) -> pd.DataFrame:
    """Per arm and k (1 and the largest k its n allows): the slope of NSR − PSR over the reference arm's rungs' base
    pass@1, and, for every arm but the first, its difference from the first arm's, paired by rung, build, seed and
    problem (cells missing from either arm are left out of that difference)."""
    counts = {a: problem_counts(p, protocol) for a, p in arms.items()}
    ref_name, ref = next(iter(counts.items()))
    order = ref.groupby("rung")["rung_order"].first().sort_values()
    rungs = list(order.index)
    x = base_skill(ref).reindex(rungs).to_numpy()
    n = min(int(c["n"].min()) for c in counts.values())
    rows = []
    for k in sorted({1, max([k for k in ks_for(n) if 2 * k <= n] or [1])}):
        ref_long = contrast_long(ref, k).set_index(["rung", "build", "seed", "problem"])["value"]
        for arm, c in counts.items():
            s = slope(x, _contrast(c, k, rungs)[1])
            row = {"arm": arm, "k": k, "slope": s.est, "lo": s.lo, "hi": s.hi, "df": s.df, "span": slope_span(x)}
            if arm != ref_name:
                long = contrast_long(c, k).set_index(["rung", "build", "seed", "problem"])["value"]
                diff = (long - ref_long).dropna().rename("value").reset_index()
                d = slope(x, to_array(diff, "value", rungs=rungs)[1])
                row |= {"vs_ref": d.est, "vs_lo": d.lo, "vs_hi": d.hi}
            rows.append(row)
    return pd.DataFrame(rows)


def arms_summary(arms: dict[str, str | Path], protocol: str | None = None) -> str:
    """Markdown: each arm's training signal, and NSR − PSR's slope per arm beside the reference arm's."""
    ref = next(iter(arms))
    out = [f"# The controls arms side by side ({protocol or 'the main sampled protocol'}; reference arm: {ref})", "",
           "## How much each objective trained (means per step over its runs)", "",
           "| arm | rung | objective | " + " | ".join(SIGNAL.values()) + " | KL to π₀ (final) | KL per 1k samples trained |",
           "|---|---|---|" + "---|" * (len(SIGNAL) + 2)]
    for arm, path in arms.items():
        for r in training_signal(path).to_dict("records"):
            vals = [f"{r[c]:.3g}" if c in r and pd.notna(r[c]) else "–" for c in (*SIGNAL, "kl_to_init", "kl_per_1k_samples")]
            out.append(f"| {arm} | {r['rung'].split(' ')[0]} | {r['objective']} | " + " | ".join(vals) + " |")
    out += ["", "## NSR − PSR: slope over the rungs' base pass@1 (builds, seeds within builds, problems random)", "",
            f"| arm | k | slope [95%] | df | minus {ref}'s [95%] |", "|---|---|---|---|---|"]
    for r in arm_slopes(arms, protocol).to_dict("records"):
        vs = (fmt_interval(r["vs_ref"], r["vs_lo"], r["vs_hi"], span=2 * r["span"]) if pd.notna(r.get("vs_ref", np.nan))
              else "(reference)")
        slope = fmt_interval(r["slope"], r["lo"], r["hi"], span=r["span"])
        out.append(f"| {r['arm']} | {r['k']} | {slope} | {r['df']:.1f} | {vs} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arms", nargs="+", help="NAME=RUNS_DIR, the reference arm first")
    ap.add_argument("--protocol", default=None, help="a name of the runs' eval_protocols (default: the main one)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    bad = [x for x in a.arms if "=" not in x or not Path(x.partition("=")[2]).is_dir()]
    if bad:
        ap.error(f"each arm is NAME=RUNS_DIR with an existing folder; not: {', '.join(bad)}")
    text = arms_summary(dict(x.split("=", 1) for x in a.arms), a.protocol)
    return emit(text, a.out)


if __name__ == "__main__":
    raise SystemExit(main())
