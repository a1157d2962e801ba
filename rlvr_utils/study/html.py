"""Render a grid's report: execute `notebooks/04_analyze` on it, then HTML without code cells."""

from __future__ import annotations

from pathlib import Path

from ..grid.cell import execute_notebook
from ..core.errors import OneLineError
from ..core.files import atomic_dir, atomic_write_text
from .reportpage import toc

ANALYZE = Path(__file__).resolve().parents[2] / "notebooks" / "04_analyze.ipynb"
TEMPLATES = Path(__file__).resolve().parent / "templates"  # rlvr_report: JupyterLab's, with nothing from a CDN


class ReportFailed(OneLineError):
    """The analysis notebook raised: the message names its cell and the exception, and where the executed part is."""


def render_report(runs_dir: str | Path, out: str | Path | None = None, **params) -> Path:
    """Writes <runs_dir>/report.ipynb and report.html (plots embedded as PNG: readable offline).

    It reads offline: MathJax comes from the `jupyter-server-mathjax` package, copied once beside the
    report (`mathjax/`, 12 MB) and loaded by a relative URL; the template loads nothing from a CDN.
    A grid with no finished cell is a ValueError before any notebook runs; a cell that raises, ReportFailed.
    """
    from ..core.startup import skip_unused_validators

    skip_unused_validators()
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    from .frames import load_grid
    from .perseed import run_deltas, unfinished

    runs = load_grid(runs_dir)  # raises for a missing folder
    if not_yet := unfinished(runs, run_deltas(runs)):  # the notebook has nothing to tabulate: say so, run nothing
        raise ValueError(f"{runs_dir}: {not_yet}")
    runs_dir = Path(runs_dir).resolve()
    out = Path(out) if out else runs_dir / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    nb_out = out.with_suffix(".ipynb")
    partial = nb_out.with_name(f".{nb_out.stem}.partial.ipynb")  # kept where a cell fails: what ran, and the traceback
    try:
        execute_notebook(ANALYZE, partial, {"runs_dir": str(runs_dir), **params})
    except papermill.PapermillExecutionError as e:  # one line, not the kernel's multi-screen traceback
        cell = next((ln.strip() for ln in e.source.splitlines() if ln.strip()), "")
        why = next(iter((e.evalue or "").strip().splitlines()), "")
        raise ReportFailed(f"{ANALYZE.stem} failed in cell [{e.exec_count}] ({cell[:60]} ...): {e.ename}: {why}; "
                           f"what ran is in {partial}, {out.name} is left as it was") from None
    partial.replace(nb_out)
    exporter = HTMLExporter(template_name="rlvr_report", extra_template_basedirs=[str(TEMPLATES)],
                            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            mathjax_url=_local_mathjax(out.parent))
    body, _ = exporter.from_notebook_node(nbformat.read(nb_out, as_version=4))
    body = body.replace("<!-- rlvr-toc -->", toc(body), 1)  # the headings exist only once every cell has run
    atomic_write_text(out, body)
    return out


def _local_mathjax(folder: Path) -> str:
    """Copy MathJax 2 (jupyter-server-mathjax's) into folder/mathjax once; its URL relative to folder."""
    import shutil

    import jupyter_server_mathjax

    dest = folder / "mathjax"
    if not (dest / "MathJax.js").exists():
        src = Path(jupyter_server_mathjax.__file__).parent / "static"
        with atomic_dir(dest, folder / ".mathjax.partial") as tmp:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
    return "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"

