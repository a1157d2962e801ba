"""The report's first screen: what study this is (name, n, date, commit), its answer in one plain sentence per primary
outcome with the numbers in a small table, and a banner where the design cannot answer. HTML, escaped where written."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from .frames import Run
from .perseed import objective_label
from .safehtml import NO_MATH, esc, table
from .crossed import DID_SPAN as DID_RANGE
from .crossed import goal_for as goal

HOPELESS = 5  # a design whose every primary MDE is this many times its goal cannot answer the question


def match_profile(runs: list[Run]) -> str:
    """The grid profile whose models and objectives hold every run's ('' where none does): what `rlvr grid` ran."""
    from ..grid.profiles import PROFILES

    models = {r.config.get("model") for r in runs}
    objs = {r.config.get("objective") for r in runs}
    for name, spec in PROFILES.items():
        if models and models <= set(spec.models) and objs <= set(spec.objectives):
            return name
    return ""


def identity(runs: list[Run], deltas: pd.DataFrame, runs_dir: str | Path) -> dict:
    """Name, profile, cells (finished of all), rungs x objectives x seeds, problems x samples, date and commits."""
    done = deltas.drop_duplicates("run") if not deltas.empty else deltas
    evals = [r.config.get("eval_problems") for r in runs]
    commits = Counter(r.config.get("_meta", {}).get("git") or "" for r in runs)
    times = [r.status.get("time", "") for r in runs if r.status.get("state") == "done"]
    return {"name": Path(runs_dir).resolve().name, "path": str(runs_dir), "profile": match_profile(runs),
            "cells": len(runs), "finished": len(done), "rungs": done["rung"].nunique() if len(done) else 0,
            "objectives": done["objective"].nunique() if len(done) else 0,
            "seeds": done["seed"].nunique() if len(done) else 0,
            "problems": max((e for e in evals if e), default=0),
            "samples": max((r.config.get("eval_samples") or 0 for r in runs), default=0),
            "date": max(times)[:10] if times else "", "commits": [c for c, _ in commits.most_common() if c]}


def header_html(ident: dict) -> str:
    """The title and one line of what the numbers rest on."""
    from ..grid.profiles import PROFILES

    about = (f"profile <code>{esc(ident['profile'])}</code>: {esc(PROFILES[ident['profile']].about)}"
             if ident["profile"] else "a grid of no known profile")
    commits = ident["commits"]
    commit = (f"code at commit <code>{esc(commits[0][:10])}</code>" + (
        f" (most cells; {len(commits)} commits in all)" if len(commits) > 1 else "") if commits else "no commit recorded")
    n = (f"{ident['finished']} of {ident['cells']} cells finished ({ident['rungs']} rungs × {ident['objectives']} "
         f"objectives × {ident['seeds']} seeds), each evaluated on {ident['problems']} held-out problems × "
         f"{ident['samples']} samples")
    return (f'<div class="{NO_MATH} rlvr-header"><h1>Study: {esc(ident["name"])}</h1><p class=rlvr-about>{about}</p>'
            + f"<p>{esc(n)}; last cell finished {esc(ident['date'] or '—')}; {commit}; "
              f"read from <code>{esc(ident['path'])}</code>.</p></div><!-- rlvr-toc -->")


def plain_sentence(it: dict) -> str:
    """A primary outcome (`crossed.crossed_interaction`) in one sentence a reader takes in at a glance."""
    c, (lo_r, hi_r), k = it["c"], it["labels"], it["k"]
    a, b = (objective_label(o) for o in it["objectives"])
    e0, e1 = it["ends"]
    g = goal(k)
    if c.se != c.se:
        return f"Pass@{k}: no answer: the variance of the estimate cannot be estimated from {c.seeds} seeds."
    if c.hi - c.lo > DID_RANGE:
        return (f"Pass@{k}: no answer at this size: the interval is wider than every possible change "
                f"({c.seeds} seeds cannot say whether {a} − {b} moves with the prior).")
    if c.lo > 0 or c.hi < 0:
        lead = b if e0 <= 0 and e1 <= 0 else a if e0 >= 0 and e1 >= 0 else ""
        grows = (abs(e1) > abs(e0))
        what = (f"{lead}'s lead over {a if lead == b else b} {'grows' if grows else 'shrinks'} with the prior"
                if lead else f"{a} − {b} changes sign with the prior")
        return f"Pass@{k}: yes, {what}: {a} − {b} goes from {e0:+.3f} on {lo_r} to {e1:+.3f} on {hi_r}."
    if -g <= c.lo and c.hi <= g:
        return (f"Pass@{k}: no, {a} − {b} changes by less than ±{g:g} from {lo_r} to {hi_r} "
                f"({e0:+.3f} and {e1:+.3f}).")
    return (f"Pass@{k}: inconclusive: the data allow no change as well as a change larger than ±{g:g} in "
            f"{a} − {b} from {lo_r} to {hi_r}.")


def verdict(it: dict) -> str:
    c, g = it["c"], goal(it["k"])
    if c.se != c.se or c.hi - c.lo > DID_RANGE:
        return "no answer"
    return "yes" if c.lo > 0 or c.hi < 0 else "no" if -g <= c.lo and c.hi <= g else "inconclusive"


def answer_frame(its: list[dict]) -> pd.DataFrame:
    """The numbers under the sentences: a row per primary outcome."""
    rows = []
    for it in its:
        c, (lo_r, hi_r), k = it["c"], it["labels"], it["k"]
        a, b = (objective_label(o) for o in it["objectives"])
        wide = c.se != c.se or c.hi - c.lo > DID_RANGE
        mde = it["mde"]
        rows.append({"outcome": f"pass@{k}", f"{a} − {b} on {lo_r}": f"{it['ends'][0]:+.3f}",
                     f"on {hi_r}": f"{it['ends'][1]:+.3f}",
                     "change (difference in differences), 95% interval":
                         f"{c.est:+.3f} " + ("(interval wider than any possible change)" if wide
                                             else f"[{c.lo:+.3f}, {c.hi:+.3f}]"),
                     "smallest detectable (80% power)": ("more than any possible change" if not mde <= 2
                                                         else f"{mde:.3f} (goal ≤ {goal(k):g})"),
                     "seeds × problems": f"{c.seeds} × {c.problems}", "answer": verdict(it)})
    return pd.DataFrame(rows)


def cannot_answer(its: list[dict], ident: dict, why: str = "") -> str:
    """A banner where the design cannot answer (every primary MDE beyond `HOPELESS` x its goal, or no estimate);
    '' where it can."""
    mdes = [it["mde"] for it in its]
    if its and not all(not (m <= HOPELESS * goal(it["k"])) for m, it in zip(mdes, its)):
        return ""
    s = ident["seeds"]
    finite = [m for m in mdes if m == m and m != float("inf")]
    size = (f"{s} seed{'s' * (s != 1)} × {ident['problems']} problems detect only an interaction of "
            f"{min(finite):.2f} or more" + (" (larger than any possible change in pass@k)" if min(finite) > 2 else "")
            if finite else f"{s} seed{'s' * (s != 1)} give no estimate of the interaction" + (f" ({why})" if why else ""))
    here = Path(__file__).resolve().parents[2] / "runs" / "family" / "REPORT.md"
    family = (" The pre-registered family study's answer is in <code>runs/family</code> "
              "(<code>REPORT.md</code>)." if here.exists() and ident["name"] != "family" else "")
    return (f'<div class="{NO_MATH} rlvr-banner"><b>This design cannot answer the study\'s question.</b> '
            f"It is a pipeline check: {esc(size)}, against the pre-registered goals of "
            f"{goal(1):g} (pass@1) and {goal(0):g} (the largest k).{family}</div>")


def answer_html(its: list[dict], why: str = "") -> str:
    """One plain sentence per primary outcome, then the numbers in a small table."""
    if not its:
        return f'<p class="{NO_MATH}">No primary answer: {esc(why or "the grid has too few rungs or seeds")}.</p>'
    items = "".join(f"<li>{esc(plain_sentence(it))}</li>" for it in its)
    a, b = (objective_label(o) for o in its[0]["objectives"])
    return (f'<ul class="{NO_MATH} rlvr-answer">{items}</ul>'
            + table(answer_frame(its), caption=f"Does {a} − {b} (each objective's change in pass@k against its rung's "
                    "base) change from the weakest to the strongest rung? Seeds and problems both random.",
                    notes="Answer: yes if the interval excludes 0, no if it lies within ± the goal, else "
                          "inconclusive (docs/prereg-family.md)."))


def figure_title(ident: dict, its: list[dict]) -> str:
    """The study figure's title: the answer, and what it rests on."""
    said = " ".join(plain_sentence(it) for it in its) if its else "No primary answer."
    return (f"The {ident['name']} study ({ident['finished']} cells: {ident['rungs']} rungs × {ident['objectives']} objectives "
            f"× {ident['seeds']} seeds, {ident['problems']} problems each). {said}")
