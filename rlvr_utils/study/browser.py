"""The rollout browser: pure filtering/rendering functions, and thin ipywidgets wiring over them."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from .frames import load_samples
from ..core.grading import STATUSES

ALL = "all"
STATUS_FILTERS = (ALL, *STATUSES)


def sources(records: pd.DataFrame) -> list[str]:
    """Selector values: 'step 3', 'eval 0', ... in order."""
    if records.empty:
        return []
    keys = records[["source", "step"]].drop_duplicates().sort_values(["source", "step"], ascending=[False, True])
    return [f"{s} {n}" for s, n in keys.itertuples(index=False)]


def filter_records(records: pd.DataFrame, source: str | None = None, status: str = ALL, subject: str = ALL,
                   level: str = ALL) -> pd.DataFrame:
    df = records
    if df.empty:
        return df
    if source:
        kind, num = source.split()
        df = df[(df["source"] == kind) & (df["step"] == int(num))]
    if status != ALL:
        df = df[df["status"] == status]
    if subject != ALL:
        df = df[df["subject"] == subject]
    if level != ALL:
        df = df[df["level"] == level]
    return df


def summary_html(df: pd.DataFrame) -> str:
    if df.empty:
        return "<b>0 samples</b> match the filters"
    counts = df["status"].value_counts()
    parts = ", ".join(f"{k}: {v}" for k, v in counts.items())
    return f"<b>{len(df)} samples</b> ({df['problem_id'].nunique()} problems) — {html.escape(parts)}"


def _math(s) -> str:
    if s is None or (isinstance(s, float) and pd.isna(s)) or str(s) == "":
        return "<i>none</i>"
    # escaped for HTML; MathJax renders the TeX between the delimiters
    return f"\\({html.escape(str(s))}\\)"


def render_record(rec: dict | pd.Series) -> str:
    """One sample as HTML: problem, completion (escaped, verbatim), extracted vs gold (LaTeX), reward."""
    r = dict(rec)
    color = {"correct": "#1a7f37", "incorrect": "#cf222e"}.get(r.get("status"), "#9a6700")
    extra = ""
    if "advantage" in r and r.get("advantage") is not None and not pd.isna(r.get("advantage")):
        extra = f" · advantage {float(r['advantage']):+.2f} · {'kept' if r.get('kept') else 'dropped'}"
    return (
        f"<div><b>{html.escape(str(r.get('subject', '')))}</b> · {html.escape(str(r.get('level', '')))} · "
        f"problem {html.escape(str(r.get('problem_id', '')))} · sample {r.get('sample', '')}</div>"
        f"<div style='margin:6px 0'>{html.escape(str(r.get('problem', '')))}</div>"
        f"<pre style='white-space:pre-wrap;background:#f6f8fa;padding:6px;max-height:320px;overflow:auto'>"
        f"{html.escape(str(r.get('completion', '')))}</pre>"
        f"<div>extracted: {_math(r.get('extracted'))} &nbsp; gold: {_math(r.get('gold'))}</div>"
        f"<div>status: <b style='color:{color}'>{html.escape(str(r.get('status')))}</b> · reward "
        f"{r.get('reward')} · finish {html.escape(str(r.get('finish_reason', '')))} · "
        f"{r.get('response_tokens', '')} tokens{extra}</div>"
    )


class SampleBrowser:
    """ipywidgets browser over a run's sample records. `.widget` is what a notebook displays."""

    def __init__(self, run_dir: str | Path | None = None, records: pd.DataFrame | None = None):
        import ipywidgets as w

        self.records = records if records is not None else load_samples(run_dir)
        if self.records.empty:
            raise ValueError(f"{run_dir}: no sample records (samples/*.jsonl) to browse")
        opts = lambda col: [ALL, *sorted(self.records[col].dropna().astype(str).unique())]
        self.source = w.Dropdown(options=sources(self.records), description="step")
        self.status = w.Dropdown(options=STATUS_FILTERS, value=ALL, description="status")
        self.subject = w.Dropdown(options=opts("subject"), value=ALL, description="subject")
        self.level = w.Dropdown(options=opts("level"), value=ALL, description="level")
        self.index = w.IntSlider(min=0, max=0, description="sample")
        self.summary = w.HTML()
        self.view = w.HTMLMath()
        for c in (self.source, self.status, self.subject, self.level):
            c.observe(self._on_filter, names="value")
        self.index.observe(lambda _: self._render(), names="value")
        self.widget = w.VBox([w.HBox([self.source, self.status]), w.HBox([self.subject, self.level]),
                              self.index, self.summary, self.view])
        self._on_filter()

    @property
    def current(self) -> pd.DataFrame:
        return filter_records(self.records, self.source.value, self.status.value, self.subject.value, self.level.value)

    def _on_filter(self, _=None) -> None:
        n = len(self.current)
        self.index.max = max(0, n - 1)
        self.index.value = min(self.index.value, self.index.max)
        self._render()

    def _render(self) -> None:
        df = self.current
        self.summary.value = summary_html(df)
        self.view.value = render_record(df.iloc[self.index.value]) if len(df) else "<i>nothing to show</i>"
