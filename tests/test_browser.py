"""The rollout browser in a real JupyterLab, driven by Playwright in Debian's chromium (no download)."""

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

from rlvr_utils.analysis import load_samples

REPO = Path(__file__).resolve().parents[1]
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


def test_inspect_rollouts_in_jupyterlab(lab, tiny_grid_run):
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook
    from playwright.sync_api import sync_playwright

    url, root = lab
    nb = load_notebook_node(str(REPO / "notebooks" / "02_inspect_rollouts.ipynb"))
    nb = parameterize_notebook(nb, {"run_dir": str(tiny_grid_run)})
    nbformat.write(nb, root / "inspect.ipynb")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/lab/tree/inspect.ipynb", wait_until="domcontentloaded")
        page.wait_for_selector(".jp-Notebook", timeout=120_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
        page.click(".jp-Notebook")
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()
        status = page.locator(".widget-dropdown", has_text="status").locator("select")
        status.wait_for(timeout=180_000)
        view = page.locator(".widget-htmlmath").last
        view.wait_for(timeout=60_000)
        before = view.inner_text()
        assert "status:" in before
        page.locator(".widget-dropdown", has_text="step").locator("select").select_option("eval 0")
        page.wait_for_function("(b) => document.querySelectorAll('.widget-htmlmath')[document.querySelectorAll("
                               "'.widget-htmlmath').length - 1].innerText !== b", arg=before, timeout=30_000)
        after = view.inner_text()
        assert after != before and "status:" in after
        recs = load_samples(tiny_grid_run).query("source == 'eval' and step == 0")
        top = recs["status"].mode()[0]  # the tiny random model mostly gives no answer at all
        status.select_option(top)
        n = int((recs["status"] == top).sum())
        page.locator(".widget-html", has_text=f"{n} samples").first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "02_inspect_rollouts.png"), full_page=True)
        browser.close()
    assert (ARTIFACTS / "02_inspect_rollouts.png").stat().st_size > 10_000
