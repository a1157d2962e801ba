"""The HTML report's sections, which notebook 04 displays in order: each a function from the grid's files to escaped
HTML (`safehtml`), '' where it has nothing to show, so an empty section is left out rather than announced."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from .frames import Run, accuracy_tables, describe_settings, eval_frame, load_grid, status_table
from .perseed import answer_k, noise_floor, perseed_effect_table, run_deltas, unfinished
from .frontpage import answer_html, cannot_answer, header_html, identity
from .crossed import crossed_interaction
from .safehtml import NO_MATH, details, esc, markdown, table
from .studyfig import CAPTION


@dataclass
class Study:
    """A grid read once: its runs, each finished run's change per k, the k of the answer and its primary outcomes."""

    runs_dir: str
    runs: list[Run]
    deltas: pd.DataFrame
    k: int
    its: list[dict]
    why: str  # why there is no primary outcome ('' where there is)

    @cached_property
    def ident(self) -> dict:
        return identity(self.runs, self.deltas, self.runs_dir)

    @cached_property
    def base(self) -> pd.Series:
        """Each rung's base pass@1 (the mean of its runs' step-0 evaluations): the figures order rungs by it."""
        return self.deltas[self.deltas["k"] == 1].groupby("rung")["base"].mean()

    @cached_property
    def pk(self) -> pd.DataFrame:
        from .passk import passk_frame

        return passk_frame(self.deltas, tuple(k for k in sorted(self.deltas["k"].unique()) if k <= self.k))

    @cached_property
    def con(self) -> pd.DataFrame:
        from .passk import contrast_frame

        return contrast_frame(self.deltas, self.ks)

    @property
    def ks(self) -> tuple[int, ...]:
        return tuple(sorted({1, self.k}))


def load_study(runs_dir: str | Path, k: int = 0) -> Study:
    """The grid's files, read once; a ValueError naming the folder where no cell has finished."""
    runs = load_grid(runs_dir)
    deltas = run_deltas(runs)
    if not_yet := unfinished(runs, deltas):
        raise ValueError(f"{runs_dir}: {not_yet}")
    k = answer_k(deltas, k, runs_dir)
    its, why = [], []
    for kk in sorted({1, k}):
        try:
            its.append(crossed_interaction(deltas, kk))
        except (KeyError, ValueError) as e:
            why.append(f"pass@{kk}: {e.args[0] if e.args else e}")
    return Study(str(runs_dir), runs, deltas, k, its, "; ".join(why))


def slug(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-")


def section(title: str, body: str, level: int = 2) -> str:
    """A heading (with the id the table of contents links to) over `body`; '' where the body is empty."""
    return f'<h{level} id="{slug(title)}">{esc(title)}</h{level}>{body}' if body and body.strip() else ""


def md(text: str) -> str:
    """Generated markdown as escaped HTML (`safehtml.markdown`); '' for ''."""
    return markdown(text) if text and text.strip() else ""


def caption(text: str) -> str:
    return f'<p class="{NO_MATH} rlvr-caption">{esc(text)}</p>'


def first_screen(st: Study, damage: str = "") -> str:
    """What the study is, whether its design can answer, and the answer in a sentence per outcome with its numbers."""
    banner = cannot_answer(st.its, st.ident, st.why)
    return header_html(st.ident) + banner + md(damage) + section("The answer", answer_html(st.its, st.why))


def page_figure(st: Study):
    from .studyfig import plot_study

    return plot_study(st.pk, st.con, st.base, st.ks, tuple(st.its[0]["labels"]) if st.its else None)


STUDY_CAPTION = ("Each objective's change in pass@1 and pass@{k} against its rung's own base (left), and NSR − PSR on each "
                 "rung (right; shaded: the two rungs the pre-registered contrast compares). " + CAPTION)


def passk_figure(st: Study):
    from .studyfig import plot_passk

    return plot_passk(st.pk, st.base)


PASSK_CAPTION = ("pass@k against k (log scale) on each rung, ordered by the base's pass@1: the base (dashed) and each "
                 "objective after training (top), and each objective's change against the base (bottom). " + CAPTION)


def status_frame(runs: list[Run]) -> pd.DataFrame:
    """Every cell's state, for people: its rung's short name, objective, seed, steps done, minutes, any error."""
    from ..priors.recipes import rung_of

    t = status_table(runs)
    if t.empty:
        return t
    t.insert(1, "rung", [rung_of(r.config)[1] for r in runs])
    return t.drop(columns=["model", "lam"]).rename(columns={"run": "cell"})


def state_counts(runs: list[Run]) -> pd.DataFrame:
    """Cells per rung x objective by state: 'done 22' at a glance, not 330 rows."""
    t = status_frame(runs)
    if t.empty:
        return t
    t["state"] = t["state"].fillna("not started")
    out = t.groupby(["rung", "objective"])["state"].agg(lambda s: ", ".join(f"{n} {st}" for st, n in s.value_counts().items()))
    return out.reset_index().rename(columns={"state": "cells"})


def settings_frame(runs: list[Run]) -> pd.DataFrame:
    """The settings a reader needs, one row each (distinct values joined): a narrow table that wraps."""
    keys = ["data", "prompt", "extraction", "steps", "prompts_per_step", "rollouts_per_prompt", "max_tokens", "lr",
            "temperature", "loss_agg", "loss_norm", "mini_batches", "eval_problems", "eval_samples", "eval_temperature",
            "engine", "precision"]
    vals = {k: sorted({str(r.config.get(k)) for r in runs if k in r.config}) for k in keys}
    return pd.DataFrame([{"setting": k, "value": ", ".join(v)} for k, v in vals.items() if v])


def runs_section(st: Study) -> str:
    """What ran: the settings (a paragraph, then a wrapping table) and how many cells are in each state."""
    return (describe_settings(st.runs)
            + table(settings_frame(st.runs), "Settings (one row each; several values where cells differ)", wrap=["value"])
            + table(state_counts(st.runs), "Cells per rung and objective, by state"))


def accuracy_section(st: Study, every: int = 10) -> str:
    """The original study's tables (accuracy per rung at steps 0, every, ...), greedy and, where evaluated, one
    sample at T = 1.0; '' where no run evaluated either."""
    evals = eval_frame(st.runs)
    if evals.empty:
        return ""
    evals = evals.assign(model=[_rung_label(st, r) for r in evals["run"]])
    out = []
    for metric, what in (("greedy", "greedy decoding"), ("t1", "one sample at T = 1.0")):
        for obj, t in accuracy_tables(evals, metric, every).items():
            out.append(table(t.reset_index().rename(columns={"model": "rung"}), f"{obj}: accuracy, {what}",
                             notes="mean ± the 95% t half-width over seeds; one seed: its bootstrap interval over problems"))
    return "".join(out)


def _rung_label(st: Study, run: str) -> str:
    from ..priors.recipes import rung_of

    by = {r.name: r for r in st.runs}
    return rung_of(by[run].config)[1] if run in by else run


def appendix(st: Study) -> str:
    """The raw frames, collapsed: every k's change per rung x objective, the noise floor, every cell's state."""
    eff = perseed_effect_table(st.deltas).drop(columns=["rung_order"])
    floor = noise_floor(st.deltas).drop(columns=["rung_order", "build"])
    fmt = {c: ".3f" for c in ("delta", "lo", "hi", "base", "sd", "half_width")}
    body = (table(eff, "Every k: each objective's Δpass@k per rung, with a 95% interval ('over': a t over seeds, or a "
                       "bootstrap over problems)", fmt)
            + table(floor, "The noise floor: each rung's base pass@k across the sampling seeds of its evaluations", fmt)
            + table(status_frame(st.runs), "Every cell", {"minutes": ".1f"}))
    return details("Appendix: the raw frames (click to open)", body)


def toc(html_text: str) -> str:
    """A table of contents from the page's level-2 headings (`section` and markdown headings both carry ids)."""
    heads = re.findall(r'<h2[^>]*\sid="([^"]+)"[^>]*>(.*?)</h2>', html_text, flags=re.S)
    items = "".join(f'<li><a href="#{i}">{re.sub(r"<[^>]+>", "", t).replace("¶", "").strip()}</a></li>' for i, t in heads)
    return f'<nav class="rlvr-toc"><b>Contents</b><ol>{items}</ol></nav>' if items else ""


def metrics_by_rung(st: Study) -> pd.DataFrame:
    """Every run's training metrics with its rung's short name and order (the curves' rows)."""
    from ..priors.recipes import rung_of

    frames = [r.metrics.assign(**r.label, rung=label, rung_order=order) for r in st.runs if len(r.metrics)
              for order, label in [rung_of(r.config)]]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def show(html_text: str) -> None:
    """Display HTML in the notebook; nothing for ''."""
    from IPython.display import HTML, display

    if html_text:
        display(HTML(html_text))


def show_figure(fig, text: str = "") -> None:
    """A figure as the report's PNG, its caption under it, then closed (no second copy at the cell's end)."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    display(fig)
    plt.close(fig)
    show(caption(text) if text else "")
