"""The notebooks under papermill: sources match, the report renders, the sample and inspect notebooks run."""

import pytest
import json
from pathlib import Path

from rlvr_utils.study.frames import load_samples
from rlvr_utils.study.browser import SampleBrowser, filter_records, render_record

pytestmark = pytest.mark.slow  # real models, papermill, vLLM or the grading pool: `make test`, not test-fast

REPO = Path(__file__).resolve().parents[1]
NB = REPO / "notebooks"


def test_committed_notebooks_match_sources_and_have_no_outputs():
    import jupytext

    for py in sorted(NB.glob("0*.py")):
        ipynb = py.with_suffix(".ipynb")
        assert ipynb.exists(), f"{ipynb.name} missing: run `make notebooks`"
        nb = json.loads(ipynb.read_text())
        assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), ipynb.name
        src = jupytext.read(py)
        assert [c.source for c in src.cells] == ["".join(c["source"]) for c in nb["cells"]], \
            f"{ipynb.name} is stale: run `make notebooks`"
        params = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
        assert len(params) == 1, f"{ipynb.name}: exactly one parameters cell"
        # every assignment is typed, commented and understood by papermill (grid validation relies on it)
        import papermill

        assigned = [ln.split(":")[0] for ln in "".join(params[0]["source"]).splitlines() if ln and not ln.startswith("#")]
        assert list(papermill.inspect_notebook(str(ipynb))) == assigned, ipynb.name










def test_report_renders_every_section(tiny_grid, capfd):
    from rlvr_utils.study.html import render_report

    runs, _, _ = tiny_grid
    html_path = render_report(runs)
    assert "[IPKernelApp]" not in capfd.readouterr().err  # the kernel's own log is noise on the terminal
    html = html_path.read_text()
    assert html_path.name == "report.html" and (runs / "report.ipynb").exists()
    for needle in ("Grading policy", "greedy accuracy", "T=1.0", "Training curves", "Final accuracy", "pass@k", "Entropy",
                   "image/png"):
        assert needle in html, needle
    assert "def " not in html and "import " not in html  # code cells are hidden
    assert "The answer" in html and "prior rung" in html  # opens with the answer (here: why there is none)
    # formulas render offline: MathJax beside the report, no CDN
    assert 'src="mathjax/MathJax.js?config=' in html and "binom" in html
    assert "cdnjs" not in html and "unpkg" not in html and 'src="http' not in html
    assert (runs / "mathjax" / "MathJax.js").exists()


def test_sample_and_inspect_notebooks_execute(tmp_path, tiny_grid, math_dir, tiny_model_path):
    import papermill

    runs, _, tiny = tiny_grid
    papermill.execute_notebook(str(NB / "01_sample_math.ipynb"), str(tmp_path / "01.ipynb"), kernel_name="python3",
                               parameters={"source": str(math_dir), "split": "test", "ratio": 0.1,
                                           "out": str(tmp_path / "s.jsonl")}, progress_bar=False, cwd=str(REPO))
    assert (tmp_path / "s.jsonl").exists()
    for params in ({"run_dir": str(runs / f"{tiny}__psr__s0")},
                   {"run_dir": "", "model": tiny_model_path, "problems": 2, "samples": 1, "max_tokens": 8}):
        out = tmp_path / "02.ipynb"
        papermill.execute_notebook(str(NB / "02_inspect_rollouts.ipynb"), str(out), kernel_name="python3",
                                   parameters=params, progress_bar=False, cwd=str(REPO))
        assert "application/vnd.jupyter.widget-view+json" in out.read_text()


def test_browser_logic_without_kernel(tiny_grid):
    runs, _, tiny = tiny_grid
    run = runs / f"{tiny}__psr__s0"
    b = SampleBrowser(run)
    assert b.source.options[0].startswith("step") and "eval 0" in b.source.options
    first = b.view.value
    assert "extracted:" in first and "status:" in first
    b.source.value = "eval 0"
    assert b.view.value != first and "samples</b>" in b.summary.value
    n_all = len(b.current)
    b.status.value = "correct"
    assert len(b.current) == (load_samples(run).query("source == 'eval' and step == 0")["status"] == "correct").sum()
    b.status.value = "all"
    b.index.value = min(1, b.index.max)
    assert len(b.current) == n_all
    # rendering escapes model text and shows LaTeX answers for MathJax
    html = render_record({"problem": "p", "completion": "<script>alert(1)</script> $x$", "extracted": "\\frac12",
                          "gold": "1/2", "status": "correct", "reward": 1.0})
    assert "<script>" not in html and "&lt;script&gt;" in html and "\\(\\frac12\\)" in html
    lvl = b.records["level"].iloc[0]
    assert (filter_records(b.records, None, "all", "all", lvl)["level"] == lvl).all()


def test_a_failing_report_cell_is_one_line_and_the_previous_report_stays(tmp_path):
    """A cell that raises: its number, first line and exception in one line (not the kernel's traceback); the
    executed part is kept for inspection and the previous report.html/.ipynb are left as they were."""
    from synthetic import _grid

    from rlvr_utils.study import html as report
    _grid(tmp_path, {}, 0.02)
    runs = tmp_path / "grid"
    for name in ("report.html", "report.ipynb"):
        (runs / name).write_text(f"the previous {name}")
    with pytest.raises(Exception) as e:  # noqa: B017 - which one is asserted below, after its message
        report.render_report(runs, k="not a number")  # a parameter the analysis cannot use
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("04_analyze failed in cell [") and "ValueError: --k not a number" in msg, msg
    assert isinstance(e.value, report.ReportFailed)  # what `rlvr` prints as one line
    partial = runs / ".report.partial.ipynb"
    assert str(partial) in msg and "evaluated at k = 1" in partial.read_text()
    for name in ("report.html", "report.ipynb"):
        assert (runs / name).read_text() == f"the previous {name}"
