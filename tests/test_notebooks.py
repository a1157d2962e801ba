"""Notebooks under papermill, the grid (skip, failure isolation, kill/resume), the report, the browser."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import TINY_GRID as TINY
from conftest import run_grid_cli as grid
from rlvr_utils.analysis import load_samples
from rlvr_utils.browser import SampleBrowser, filter_records, render_record
from rlvr_utils.runs import RunDir

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


def test_grid_runs_cells_and_isolates_failure(tiny_grid):
    runs, p, tiny = tiny_grid
    assert p.returncode == 1, p.stdout  # one failed cell -> non-zero exit, after the others ran
    assert "2 done, 2 failed" in p.stdout
    for obj in ("psr", "nsr"):
        cell = RunDir(runs / f"{tiny}__{obj}__s0")
        assert cell.status()["state"] == "done"
        assert cell.notebook.exists() and [m["step"] for m in cell.read_metrics()] == [1, 2]
        nb = json.loads(cell.notebook.read_text())
        assert any(c.get("outputs") for c in nb["cells"])  # executed
        bad = RunDir(runs / f"model__{obj}__s0")  # /nonexistent/model
        assert bad.status()["state"] == "failed" and "nonexistent" in bad.status()["error"]


def test_grid_rerun_skips_done_cells_and_dry_run(tiny_grid, tiny_model_path):
    runs, _, tiny = tiny_grid
    nb = runs / f"{tiny}__psr__s0" / "train.ipynb"
    before = nb.stat().st_mtime_ns
    p = grid(runs, f"models={tiny_model_path}", "objectives=psr,nsr", *TINY)
    assert p.stdout.count("done, skipped") == 2 and nb.stat().st_mtime_ns == before
    p = grid(runs, f"models={tiny_model_path}", "objectives=psr,w_reinforce", extra_args=["--dry-run"])
    assert "done" in p.stdout and "pending" in p.stdout and "w_reinforce" in p.stdout


def test_grid_rejects_unknown_parameter(tmp_path):
    p = grid(tmp_path, "not_a_param=3", check=False)
    assert p.returncode == 2 and "not_a_param" in p.stderr and "parameters cell" in p.stderr
    p = grid(tmp_path, "objectives=psr,ppo", check=False)
    assert p.returncode == 2 and "ppo" in p.stderr
    assert not any(tmp_path.iterdir())


def test_grid_killed_mid_cell_resumes_from_checkpoint(tmp_path, tiny_model_path):
    sets = [f"models={tiny_model_path}", "objectives=psr,nsr", *TINY, "steps=6"]
    args = [sys.executable, "-m", "rlvr_utils.cli", "grid", "--runs", str(tmp_path)]
    for s in sets:
        args += ["--set", s]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    tiny = Path(tiny_model_path).name
    second = RunDir(tmp_path / f"{tiny}__nsr__s0")
    deadline = time.time() + 600
    # wait until the first cell is done and the second has a checkpoint, then kill everything
    while time.time() < deadline and not (second.checkpoints / "latest" / "state.pt").exists():
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = RunDir(tmp_path / f"{tiny}__psr__s0")
    assert first.status()["state"] == "done" and second.status()["state"] == "running"
    done_at = first.notebook.stat().st_mtime_ns
    assert 1 <= len(second.read_metrics()) < 6
    p = grid(tmp_path, *sets)
    assert "resuming" in p.stdout and p.stdout.count("done, skipped") == 1
    assert first.notebook.stat().st_mtime_ns == done_at
    assert [m["step"] for m in second.read_metrics()] == [1, 2, 3, 4, 5, 6]  # nothing lost or doubled
    assert "resumed from checkpoint" in second.notebook.read_text()
    for f in (second.metrics, second.evals):  # every line parses: no torn writes
        assert all(json.loads(x) for x in f.read_text().splitlines())
    assert json.loads(second.config.read_text())["steps"] == 6


def test_report_renders_every_section(tiny_grid):
    from rlvr_utils.report import render_report

    runs, _, _ = tiny_grid
    html_path = render_report(runs)
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
