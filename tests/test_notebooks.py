"""The notebooks under papermill: sources match, the report renders, the sample and inspect notebooks run."""

import json
from pathlib import Path

import pytest

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
    for needle in ("Study: ", "Grading policy", "greedy decoding", "one sample at T = 1.0", "Training curves", "pass@k",
                   "Entropy", "image/png", 'class="rlvr-toc"', "Appendix: the raw frames"):
        assert needle in html, needle
    assert "def " not in html and "import " not in html  # code cells are hidden
    assert "The answer" in html and "No primary answer" in html  # opens with the answer (here: why there is none)
    # formulas render offline: MathJax beside the report, no CDN
    assert 'src="mathjax/MathJax.js?config=' in html and "binom" in html
    assert "cdnjs" not in html and "unpkg" not in html and 'src="http' not in html
    assert (runs / "mathjax" / "MathJax.js").exists()
    assert not _stderr_blocks(runs / "report.ipynb", longer_than=5)


def _stderr_blocks(notebook: Path, longer_than: int) -> list[str]:
    """The executed notebook's stderr outputs longer than `longer_than` lines (third-party noise in a reader's face)."""
    nb = json.loads(notebook.read_text())
    outs = ["".join(o["text"]) for c in nb["cells"] for o in c.get("outputs", [])
            if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    return [t for t in outs if len(t.splitlines()) > longer_than]


def test_sample_and_inspect_notebooks_execute(tmp_path, tiny_grid, math_dir, tiny_model_path):
    import papermill

    runs, _, tiny = tiny_grid
    out = tmp_path / "01.ipynb"
    papermill.execute_notebook(str(NB / "01_sample_math.ipynb"), str(out), kernel_name="python3",
                               parameters={"data": str(math_dir), "split": "test", "ratio": 0.1,
                                           "out": str(tmp_path / "s.jsonl")}, progress_bar=False, cwd=str(REPO))
    assert (tmp_path / "s.jsonl").exists() and "without gold" in out.read_text() and not _stderr_blocks(out, 5)
    for params in ({"run_dir": str(runs / f"{tiny}__psr__s0")},
                   {"run_dir": "", "profile": "cpu", "model": tiny_model_path, "problems": 2, "samples": 1, "max_tokens": 8}):
        out = tmp_path / "02.ipynb"
        papermill.execute_notebook(str(NB / "02_inspect_rollouts.ipynb"), str(out), kernel_name="python3",
                                   parameters=params, progress_bar=False, cwd=str(REPO))
        text = out.read_text()
        assert "application/vnd.jupyter.widget-view+json" in text and "A static copy of the per-problem view" in text
        assert not _stderr_blocks(out, 5)


def test_the_task_notebook_shows_the_task_its_knob_and_the_ladder(tmp_path):
    import papermill

    out = tmp_path / "01.ipynb"
    papermill.execute_notebook(str(NB / "01_sample_math.ipynb"), str(out), kernel_name="python3", progress_bar=False,
                               cwd=str(REPO))
    text = out.read_text()
    for needle in ("worked solution", "The answer is", "difficulty", "largest |answer|", "1m (0.87M params) × 2.00M tokens"):
        assert needle in text, needle
    assert not _stderr_blocks(out, 5)


def test_the_train_notebook_by_default_trains_and_its_curves_move(tmp_path, monkeypatch):
    """Notebook 03 as a newcomer runs it: its default parameters (the smoke profile's settings on the family's 1m
    model at 2M tokens, PSR), one step by hand, then training. Only the run folder and the rung cache (a copy of the
    committed rung, so nothing is pretrained here) are set."""
    import shutil

    import papermill

    from rlvr_utils.study.frames import load_run

    rung = next((REPO / "runs" / "family-rungs").glob("1m-s0-*"))
    shutil.copytree(rung / "t2000000", tmp_path / "rungs" / rung.name / "t2000000")
    monkeypatch.setenv("RLVR_FAMILY_CACHE", str(tmp_path / "rungs"))
    out, run_dir = tmp_path / "03.ipynb", tmp_path / "cell"
    papermill.execute_notebook(str(NB / "03_train.ipynb"), str(out), kernel_name="python3", progress_bar=False,
                               parameters={"run_dir": str(run_dir)}, cwd=str(REPO))
    text = out.read_text()
    assert "psr: trains on " in text and "third_party.log" in text and "image/png" in text
    r = load_run(run_dir)
    assert r.status["state"] == "done" and len(r.metrics) == 8
    assert r.metrics["kept"].gt(0).all() and r.metrics["loss"].ne(0).all()  # PSR had correct samples every step
    assert r.metrics["reward_mean"].nunique() > 1 and r.metrics["entropy_kept"].nunique() > 1
    ev = r.evals.set_index("step")
    assert ev.loc[8, "pass@1"] != ev.loc[0, "pass@1"]  # the policy moved
    assert not _stderr_blocks(out, 5)


def test_browser_logic_without_kernel(tmp_path):
    from synthetic import finished_cell

    from rlvr_utils.study.browser import problem_html, static_html, training_phrase

    b = SampleBrowser(finished_cell(tmp_path))  # NSR: its correct samples are left out of the loss
    assert b.source.options[0] == "step 1" and "eval 0" in b.source.options
    first, counts = b.view.value, b.counts.value
    assert "extracted:" in first and "status:" in first and r"\(\boxed{" in first  # the completion's maths typeset
    b.status.value = "correct"
    assert len(b.current) == 2 and "2 samples" in b.summary.value and b.counts.value != counts  # counts follow
    assert "not trained on" in b.view.value and "advantage" not in b.view.value  # not "advantage -1.00 · dropped"
    b.status.value = "incorrect"
    assert "made less likely (advantage -1.00)" in b.view.value
    b.status.value, b.source.value, b.mode.value = "all", "eval 2", "one problem"
    assert b.problem.options == ("p0", "p1", "p2", "p3")
    assert "correct in 0 of 4 samples before training, 1 of 4 after" in b.view.value
    p2 = problem_html(b.records, "eval 2", "p2")
    assert "greedy" in p2 and "4 of 4 samples here correct" in p2
    assert "problem p2" in static_html(b.records)  # the problem that moved most (2 -> 4 of 4)
    assert training_phrase({"advantage": 0.1, "kept": True}).startswith("trained on: made more likely")
    # rendering escapes model text and shows LaTeX answers for MathJax
    html = render_record({"problem": "p", "completion": "<script>alert(1)</script> $x$", "extracted": "\\frac12",
                          "gold": "1/2", "status": "correct", "reward": 1.0})
    assert "<script>" not in html and "&lt;script&gt;" in html and "\\(\\frac12\\)" in html and "\\(x\\)" in html
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
