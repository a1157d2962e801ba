"""The rollout browser: pure filtering and rendering functions, and thin ipywidgets wiring over them.

Two views of a run's sample records: one sample at a time, or one problem (every sample of it at a step, with its
reward, advantage and whether the loss used it, and its correct count before and after training). Model output is
escaped and only plain maths reaches MathJax (`safehtml.text_with_math`). `static_html` is the same view as plain
HTML, for a notebook exported without its widgets."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .frames import load_samples
from ..core.grading import STATUSES
from .safehtml import NO_MATH, esc, math, text_with_math

ALL = "all"
STATUS_FILTERS = (ALL, *STATUSES)
COLORS = {"correct": "#1a7f37", "incorrect": "#cf222e"}
VIEWS = ("one sample", "one problem")


def sources(records: pd.DataFrame) -> list[str]:
    """Selector values: 'step 3', 'eval 0', ... in order."""
    if records.empty:
        return []
    keys = records[["source", "step"]].drop_duplicates().sort_values(["source", "step"], ascending=[False, True])
    return [f"{s} {n}" for s, n in keys.itertuples(index=False)]


def filter_records(records: pd.DataFrame, source: str | None = None, status: str = ALL, subject: str = ALL,
                   level: str = ALL, problem: str = ALL) -> pd.DataFrame:
    df = records
    if df.empty:
        return df
    if source:
        kind, num = source.split()
        df = df[(df["source"] == kind) & (df["step"] == int(num))]
    for col, want in (("status", status), ("subject", subject), ("level", level), ("problem_id", problem)):
        if want != ALL:
            df = df[df[col].astype(str) == want]
    return df


def summary_html(df: pd.DataFrame) -> str:
    """The counts of what the filters select: samples, problems, and each status."""
    if df.empty:
        return "<b>0 samples</b> match the filters"
    counts = df["status"].value_counts()
    parts = ", ".join(f"{k} {v}" for k, v in counts.items())
    return f"<b>{len(df)} samples</b> of {df['problem_id'].nunique()} problems match the filters: {esc(parts)}"


def counts_table(df: pd.DataFrame, by: str = "level") -> pd.DataFrame:
    """Share of correct samples per `by` value among the filtered records."""
    if df.empty:
        return pd.DataFrame(columns=[by, "samples", "correct", "share correct"])
    g = df.assign(ok=df["status"] == "correct").groupby(by)["ok"]
    return pd.DataFrame({"samples": g.size(), "correct": g.sum(), "share correct": g.mean().round(3)}).reset_index()


def training_phrase(rec: dict) -> str:
    """What the loss did with a training sample, worded so that a sample an objective leaves out (NSR's correct
    ones, PSR's incorrect ones) does not read as penalised."""
    adv, kept = rec.get("advantage"), rec.get("kept")
    if adv is None or (isinstance(adv, float) and pd.isna(adv)):
        return ""
    if not kept:
        return "not trained on (this objective leaves it out of the loss)"
    a = float(adv)
    way = "made more likely" if a > 0 else "made less likely" if a < 0 else "in the loss with weight 0"
    return f"trained on: {way} (advantage {a:+.2f})"


def render_record(rec: dict | pd.Series) -> str:
    """One sample as HTML: problem, completion (escaped; its maths typeset), extracted vs gold, reward, training."""
    r = dict(rec)
    color = COLORS.get(r.get("status"), "#9a6700")
    trained = training_phrase(r)
    return (
        f'<div class="{NO_MATH}"><b>{esc(r.get("subject", ""))}</b> · {esc(r.get("level", ""))} · '
        f"problem {esc(r.get('problem_id', ''))} · "
        + ("greedy answer" if r.get("protocol") == "greedy" else f"sample {esc(r.get('sample', ''))}") + "</div>"
        f"<div style='margin:6px 0'>{text_with_math(r.get('problem', ''))}</div>"
        f"<div class='rlvr-completion' style='white-space:pre-wrap;background:#f6f8fa;padding:6px;max-height:320px;"
        f"overflow:auto'>{text_with_math(r.get('completion', ''))}</div>"
        f"<div>extracted: {math(r.get('extracted'))} &nbsp; gold: {math(r.get('gold'))}</div>"
        f"<div class='{NO_MATH}'>status: <b style='color:{color}'>{esc(r.get('status'))}</b> · reward "
        f"{esc(r.get('reward'))} · finish {esc(r.get('finish_reason', ''))} · {esc(r.get('response_tokens', ''))} tokens"
        + (f" · {esc(trained)}" if trained else "") + "</div>"
    )


def before_after(records: pd.DataFrame, problem_id: str) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(c, n) of a problem's sampled evaluation answers at the first and at the last evaluation; None where the
    problem was not evaluated twice."""
    ev = records[(records["source"] == "eval") & (records["problem_id"].astype(str) == str(problem_id))]
    if "protocol" in ev:
        ev = ev[ev["protocol"] == "sampled"]
    steps = sorted(ev["step"].unique())
    if len(steps) < 2:
        return None
    at = lambda s: (int((ev[ev["step"] == s]["status"] == "correct").sum()), int((ev["step"] == s).sum()))  # noqa: E731
    return at(steps[0]), at(steps[-1])


def problem_html(records: pd.DataFrame, source: str | None, problem_id: str) -> str:
    """Every sample of one problem at a step (or evaluation): its answer, status, reward and what the loss did with
    it, and the problem's correct count at the first and last evaluation."""
    rows = filter_records(records, source, problem=str(problem_id))
    if rows.empty:
        return "<i>no samples of this problem here</i>"
    first = rows.iloc[0]
    ba = before_after(records, problem_id)
    change = (f"correct in {ba[0][0]} of {ba[0][1]} samples before training, {ba[1][0]} of {ba[1][1]} after"
              if ba else "not evaluated before and after training")
    sampled = rows[rows["protocol"] != "greedy"] if "protocol" in rows else rows  # an evaluation's greedy answer apart
    c = int((sampled["status"] == "correct").sum())
    items = []
    for r in rows.sort_values("sample").to_dict("records"):
        color = COLORS.get(r.get("status"), "#9a6700")
        trained = training_phrase(r)
        name = "greedy" if r.get("protocol") == "greedy" else f"sample {r.get('sample')}"
        items.append(
            f"<li><span class='{NO_MATH}'>{esc(name)}: <b style='color:{color}'>{esc(r.get('status'))}"
            f"</b> · reward {esc(r.get('reward'))}" + (f" · {esc(trained)}" if trained else "") + "</span> · answer "
            f"{math(r.get('extracted'))}<div style='white-space:pre-wrap;background:#f6f8fa;padding:4px;margin:2px 0 8px 0'>"
            f"{text_with_math(r.get('completion', ''))}</div></li>")
    return (f"<div class='{NO_MATH}'><b>problem {esc(problem_id)}</b> · {esc(source or 'every step')} · {esc(change)}</div>"
            f"<div style='margin:6px 0'>{text_with_math(first.get('problem', ''))}</div>"
            f"<div>gold {math(first.get('gold'))} · <span class='{NO_MATH}'>{c} of {len(sampled)} samples here correct"
            f"</span></div><ol style='padding-left:1.2em'>{''.join(items)}</ol>")


def static_html(records: pd.DataFrame, problems: int = 2) -> str:
    """A copy of the per-problem view that needs no widgets: the last evaluation's first `problems` problems that
    changed most between the first and last evaluation (or simply the first ones)."""
    if records.empty:
        return ""
    evals = [s for s in sources(records) if s.startswith("eval")]
    source = evals[-1] if evals else sources(records)[-1]
    ids = list(dict.fromkeys(filter_records(records, source)["problem_id"].astype(str)))

    def moved(pid: str) -> float:
        ba = before_after(records, pid)
        return -abs(ba[1][0] / max(ba[1][1], 1) - ba[0][0] / max(ba[0][1], 1)) if ba else 0.0

    pick = sorted(ids, key=moved)[:problems]
    return (f"<p class='{NO_MATH}'><i>A static copy of the per-problem view ({esc(source)}; the problems whose correct "
            "share moved most), readable where the widgets above cannot run, e.g. in an exported notebook.</i></p>"
            + "".join(problem_html(records, source, p) for p in pick))


class SampleBrowser:
    """ipywidgets browser over a run's sample records. `.widget` is what a notebook displays."""

    def __init__(self, run_dir: str | Path | None = None, records: pd.DataFrame | None = None):
        import ipywidgets as w

        self.records = records if records is not None else load_samples(run_dir)
        if self.records.empty:
            raise ValueError(f"{run_dir}: no sample records (samples/*.jsonl) to browse")
        opts = lambda col: [ALL, *sorted(self.records[col].dropna().astype(str).unique())]  # noqa: E731
        self.source = w.Dropdown(options=sources(self.records), description="step")
        self.status = w.Dropdown(options=STATUS_FILTERS, value=ALL, description="status")
        self.subject = w.Dropdown(options=opts("subject"), value=ALL, description="subject")
        self.level = w.Dropdown(options=opts("level"), value=ALL, description="level")
        self.mode = w.ToggleButtons(options=VIEWS, value=VIEWS[0], description="view")
        self.problem = w.Dropdown(options=[], description="problem")
        self.index = w.IntSlider(min=0, max=0, description="sample")
        self.summary = w.HTML()
        self.counts = w.HTML()
        self.view = w.HTMLMath()
        for c in (self.source, self.status, self.subject, self.level):
            c.observe(self._on_filter, names="value")
        for c in (self.index, self.mode, self.problem):
            c.observe(lambda _: self._render(), names="value")
        self.widget = w.VBox([w.HBox([self.source, self.status]), w.HBox([self.subject, self.level]), self.mode,
                              w.HBox([self.index, self.problem]), self.summary, self.view, self.counts])
        self._on_filter()

    @property
    def current(self) -> pd.DataFrame:
        return filter_records(self.records, self.source.value, self.status.value, self.subject.value, self.level.value)

    def _on_filter(self, _=None) -> None:
        df = self.current
        self.index.max = max(0, len(df) - 1)
        self.index.value = min(self.index.value, self.index.max)
        ids = list(dict.fromkeys(df["problem_id"].astype(str))) if len(df) else []
        self.problem.options = ids
        if ids and self.problem.value not in ids:
            self.problem.value = ids[0]
        self._render()

    def _render(self) -> None:
        from .safehtml import table

        df = self.current
        self.summary.value = summary_html(df)
        self.counts.value = table(counts_table(df), "Counts for the current filter, per level")
        one_problem = self.mode.value == VIEWS[1]
        self.index.layout.display = "none" if one_problem else None
        self.problem.layout.display = None if one_problem else "none"
        if not len(df):
            self.view.value = "<i>nothing to show</i>"
        elif one_problem:  # every sample of the problem at this step, whatever the status filter: c of n
            self.view.value = problem_html(self.records, self.source.value, str(self.problem.value))
        else:
            self.view.value = render_record(df.iloc[self.index.value])
