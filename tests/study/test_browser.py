"""The rollout browser in a real JupyterLab, driven by Playwright in Debian's chromium (no download)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from rlvr_utils.study.frames import load_samples

pytestmark = pytest.mark.slow  # real models, papermill, vLLM or the grading pool: `make test`, not test-fast

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium missing: `make setup` installs Debian's chromium (apt-get install chromium)")
        pytest.skip("Debian chromium not installed (make browser)")
    port = _free_port()
    # no "Jupyter news?" toast over the outputs in a failure's screenshot (it blocks nothing)
    news = tmp_path / "cfg/lab/user-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         "--IdentityProvider.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
         f"--ServerApp.root_dir={tmp_path}", "--allow-root"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "lab.log", "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=1)
            break
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("jupyterlab did not start:\n" + (tmp_path / "lab.log").read_text()[-2000:])
    yield url, tmp_path
    proc.terminate()
    proc.wait(timeout=30)


def _kernel_ready(url: str) -> bool:
    """The notebook's kernel has started (idle) and the page is connected to it. JupyterLab's own
    indicators are no use here: the toolbar's execution indicator reads 'idle' before any kernel exists."""
    sessions = json.loads(urllib.request.urlopen(f"{url}/api/sessions", timeout=5).read())
    return any(s["kernel"]["execution_state"] == "idle" and s["kernel"]["connections"] for s in sessions)


# Run All has finished: no cell queued or running ([*]) and at least one has run, or a dialog blocks the page.
# (After an error, the cells below it go back to [ ], so this holds for a failed run too.)
_RUN_ALL_SETTLED = """() => {
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')].map(e => e.innerText);
  return !!document.querySelector('.jp-Dialog') || (!prompts.some(p => p.includes('*')) && prompts.some(p => /\\d/.test(p)));
}"""


def _save_artifacts(page, log: list[str], url: str, root: Path) -> Path:
    """What says why the browser part failed: screenshot, console, server and kernel logs, the cells as rendered."""
    out = ARTIFACTS / "test_inspect_rollouts_in_jupyterlab"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / "console.log").write_text("\n".join(log))
    shutil.copy(root / "lab.log", out / "lab.log")  # the server's log; the kernel's stderr goes there too
    try:
        (out / "sessions.json").write_text(urllib.request.urlopen(f"{url}/api/sessions", timeout=5).read().decode())
        page.screenshot(path=str(out / "screenshot.png"), full_page=True)
        cells = page.locator(".jp-Notebook .jp-Cell").evaluate_all(
            "cs => cs.map(c => [c.querySelector('.jp-InputPrompt')?.innerText, c.querySelector('.jp-InputArea-editor')"
            "?.innerText, [...c.querySelectorAll('.jp-OutputArea-output')].map(o => o.innerText).join('\\n')])")
        (out / "cells.txt").write_text("\n\n".join(f"{p} {src}\n--- output:\n{o}" for p, src, o in cells))
    except Exception as e:  # noqa: BLE001 - the page or server may be gone: keep what was saved
        (out / "artifact-errors.txt").write_text(repr(e))
    return out


@pytest.fixture
def finished_grid(tmp_path_factory) -> Path:
    """A finished grid's NSR cell (samples ending in `$\\boxed{N}$`), written as the trainer writes one."""
    from synthetic import finished_cell

    return finished_cell(tmp_path_factory.mktemp("grid"))


def test_inspect_rollouts_in_jupyterlab(lab, finished_grid):
    """Notebook 02 in JupyterLab on a finished grid's cell: filtering to correct samples changes the counts, and the
    completion's `\\boxed{}` is typeset by JupyterLab's MathJax, not shown raw."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook
    from playwright.sync_api import sync_playwright

    url, root = lab
    recs = load_samples(finished_grid)
    nb = load_notebook_node(str(REPO / "notebooks" / "02_inspect_rollouts.ipynb"))
    nb = parameterize_notebook(nb, {"run_dir": str(finished_grid)})
    nbformat.write(nb, root / "inspect.ipynb")
    ARTIFACTS.mkdir(exist_ok=True)
    t0 = time.monotonic()
    log: list[str] = []
    mark = lambda what: log.append(f"{time.monotonic() - t0:6.1f}s [test] {what}")  # noqa: E731
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: log.append(f"{time.monotonic() - t0:6.1f}s [{m.type}] {m.text}"))
        page.on("pageerror", lambda e: log.append(f"{time.monotonic() - t0:6.1f}s [pageerror] {e}"))
        try:
            page.goto(f"{url}/lab/tree/inspect.ipynb", wait_until="domcontentloaded")
            page.wait_for_selector(".jp-Notebook", timeout=120_000)
            mark("notebook shown")
            # Run All clicked before the kernel has started runs nothing: the cells stay [ ] (or a "Select
            # Kernel" dialog opens) and no output ever comes. Measured from here, 2 cores: 2.5 s idle; 5-6 s
            # with busy processes beside the test or the server; 120 s is >10x that.
            deadline = time.monotonic() + 120
            while not _kernel_ready(url):
                assert time.monotonic() < deadline, "the notebook's kernel did not start in 120 s"
                time.sleep(0.25)
            mark("kernel idle and connected")
            page.click(".jp-Notebook")
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()
            # Measured (mostly the first cell's imports): 4.5-5 s idle; 6-11 s with busy processes beside the test or
            # the server; 120 s is >10x that.
            page.wait_for_function(_RUN_ALL_SETTLED, timeout=120_000, polling=250)
            mark("run all settled")
            dialogs = page.locator(".jp-Dialog").all_inner_texts()
            assert not dialogs, f"a dialog blocks the page: {dialogs}"
            prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").all_inner_texts()
            errors = page.locator(".jp-OutputArea-output", has_text="Traceback").all_inner_texts()
            assert all(any(c.isdigit() for c in p) for p in prompts) and not errors, f"cells {prompts}:\n" + "\n".join(errors)
            # the kernel is done: what is left is rendering the widget views (measured under a second)
            status = page.locator(".widget-dropdown", has_text="status").locator("select")
            status.wait_for(timeout=30_000)
            view = page.locator(".widget-htmlmath").first
            view.wait_for(timeout=30_000)
            summary = page.locator(".widget-html", has_text="match the filters").first
            step1 = recs.query("source == 'step' and step == 1")
            summary.filter(has_text=f"{len(step1)} samples").wait_for(timeout=30_000)
            before = summary.inner_text()
            status.select_option("correct")
            n = int((step1["status"] == "correct").sum())
            assert 0 < n < len(step1)
            summary.filter(has_text=f"{n} samples").wait_for(timeout=30_000)
            assert summary.inner_text() != before and "correct 2" in summary.inner_text()
            counts = page.locator(".widget-html", has_text="Counts for the current filter").first
            counts.filter(has_text=f"{n}").wait_for(timeout=30_000)
            mark("filtered to correct samples: the counts followed")
            # JupyterLab's MathJax typesets the completion's \boxed{}: a rendered element, and no raw TeX left
            view.locator("mjx-container, .MathJax").first.wait_for(timeout=60_000)
            text = view.inner_text()
            assert "\\boxed" not in text and "status: correct" in text.replace("\n", " "), text
            assert "not trained on" in text  # a correct sample of an NSR run is left out, not "penalised"
            mark("boxed typeset")
            page.screenshot(path=str(ARTIFACTS / "02_inspect_rollouts.png"), full_page=True)
        except Exception as e:
            raise AssertionError(f"{type(e).__name__}: {e}\nartifacts: {_save_artifacts(page, log, url, root)}") from e
        finally:
            browser.close()
    print("\n".join(ln for ln in log if "[test]" in ln))
    assert (ARTIFACTS / "02_inspect_rollouts.png").stat().st_size > 10_000


def test_report_formulas_render_offline(tiny_grid):
    """The report's MathJax loads from beside it: typeset formulas in a browser with the network off."""
    from playwright.sync_api import sync_playwright

    from rlvr_utils.study.html import render_report

    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium missing: `make setup` installs Debian's chromium (apt-get install chromium)")
        pytest.skip("Debian chromium not installed (make browser)")
    runs, _, _ = tiny_grid
    html = render_report(runs, runs / "offline" / "report.html")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                                    "--allow-file-access-from-files"])
        context = browser.new_context(offline=True)
        page = context.new_page()
        page.goto(html.as_uri(), wait_until="load")
        page.wait_for_function("window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0 && "
                               "document.querySelectorAll('.MathJax, .MathJax_CHTML, .MathJax_SVG').length > 0",
                               timeout=60_000)
        typeset = page.evaluate("document.querySelectorAll('.MathJax, .MathJax_CHTML, .MathJax_SVG').length")
        browser.close()
    assert typeset >= 1
