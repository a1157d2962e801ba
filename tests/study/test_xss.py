"""Hostile run folders in a real browser: config strings, a model folder's name and model output that carry script,
event handlers, `javascript:` links and TeX's `\\href` must reach the report and the rollout browser as text."""

import json
import os
import shutil
from pathlib import Path

import pytest

from synthetic import _counts_recs, _p1_row, finished_cell, write_eval

from rlvr_utils.study.frames import load_samples
from rlvr_utils.study.browser import problem_html, render_record, static_html
from rlvr_utils.core.files import append_jsonl
from rlvr_utils.core.runs import RunDir

pytestmark = pytest.mark.slow  # papermill and chromium

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
JS = "window.__pwned=1"
EVIL = [f"<script>{JS}</script>", f'<img src=x onerror="{JS}">', f"<svg onload={JS}>", "<q>quoted</q>",
        f'<a href="javascript:{JS}">link</a>', f"$\\href{{javascript:{JS}}}{{click}}$", f"\\(\\href{{javascript:{JS}}}{{x}}\\)"]
# the free-text fields a config holds (the others must be among their registry's names, or the run is refused);
# the third rung's folder name carries an event handler
CONFIG = {"levels": f"Level 1,{EVIL[0]},{EVIL[4]}", "data": f"{EVIL[5]} {EVIL[3]} {EVIL[1]} {EVIL[6]}"}
# What a page may hold after loading: no payload ran, no element carries a handler, no javascript: link, no <q>, and
# the payloads are there as text
DOM = """() => ({
  pwned: window.__pwned === 1,
  handlers: [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => /^on/i.test(a.name))).length,
  js_links: [...document.querySelectorAll('[href],[src],[action]')].filter(e => /^\\s*javascript:/i.test(
    e.getAttribute('href') || e.getAttribute('src') || e.getAttribute('action') || '')).length,
  payload_scripts: [...document.scripts].filter(s => (!s.type || /javascript|module/i.test(s.type))
    && s.textContent.includes('__pwned')).length,
  q: document.querySelectorAll('q').length,
  shown: document.body.innerText.includes('<script>window.__pwned=1</script>'),
  typeset: document.querySelectorAll('.MathJax, .MathJax_Display, mjx-container').length,
})"""


def _hostile_grid(root: Path) -> Path:
    """2 ordered rungs (warm starts n=0, n=1000) and one whose folder's name is markup with a handler, x PSR/NSR x
    2 seeds, finished, every config carrying `CONFIG`'s strings."""
    for n, name in ((0, "n0"), (1000, "n1000"), (None, f'<q onclick="{JS}">rung')):  # a folder name is a label
        rung = root / "rungs" / name
        rung.mkdir(parents=True)
        if n is not None:
            (rung / "warmstart.json").write_text(json.dumps({"n": n}))
        for obj in ("psr", "nsr"):
            for s in range(2):
                run = RunDir(root / "grid" / f"{name[:9]}__{obj}__s{s}")
                run.path.mkdir(parents=True)
                run.config.write_text(json.dumps({"model": str(rung), "objective": obj, "seed": s, "steps": 6, "eval_every": 0,
                                                  "eval_samples": 4, "rollouts_per_prompt": 4, "max_tokens": 64, **CONFIG}))
                after = [min(4, (i + s + (obj == "nsr")) % 5) for i in range(16)]
                append_jsonl(run.evals, [_p1_row(0, 0.5), _p1_row(6, sum(after) / 64)])
                write_eval(run, 0, _counts_recs([2] * 16))
                write_eval(run, 6, _counts_recs(after))
                append_jsonl(run.metrics, [{"step": t, "reward_mean": 0.1 * t, "kept": 4, "entropy_kept": 0.3,
                                            "response_len_mean": 20.0, "loss": 0.1, "time_total": 1.0} for t in range(1, 7)])
                run.set_status("done")
    return root / "grid"


def _dom(page_path: Path) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                                    "--allow-file-access-from-files"])
        page = browser.new_context(offline=True).new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_path.as_uri(), wait_until="load")
        page.wait_for_function("window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0", timeout=60_000)
        dom = page.evaluate(DOM)
        browser.close()
    return dom | {"errors": errors}


@pytest.fixture
def chromium():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium missing: `make setup` installs Debian's chromium (apt-get install chromium)")
        pytest.skip("Debian chromium not installed (make browser)")


def test_a_hostile_grid_renders_as_text_in_the_report(tmp_path, chromium):
    from rlvr_utils.study.html import render_report

    grid = _hostile_grid(tmp_path)
    html = render_report(grid)
    dom = _dom(html)
    assert not dom["pwned"] and dom["handlers"] == 0 and dom["js_links"] == 0 and dom["payload_scripts"] == 0, dom
    assert dom["q"] == 0 and dom["shown"], dom  # the config's text is on the page, as text
    assert dom["typeset"] >= 1, dom  # MathJax ran (the pass@k formula): it simply never saw the config's TeX


def test_hostile_model_output_renders_as_text_in_the_rollout_browser(tmp_path, chromium):
    from rlvr_utils.study.html import _local_mathjax

    sample = {"problem": f"Compute 2 + 3. {EVIL[3]} {EVIL[0]}", "extracted": EVIL[6].strip("\\()"), "gold": EVIL[4],
              "completion": f"{EVIL[1]}\n{EVIL[2]}\n{EVIL[5]} and {EVIL[6]}\nThe answer is $\\boxed{{5}}$."}
    recs = load_samples(finished_cell(tmp_path, hostile={"sample": sample}))
    body = (static_html(recs) + problem_html(recs, "step 1", "p0")
            + "".join(render_record(r) for r in recs.head(3).to_dict("records")))
    # MathJax here without its Safe extension: what keeps \href out is the browser's own allowlist
    page = tmp_path / "browser.html"
    mj = _local_mathjax(tmp_path).split(",Safe")[0]
    page.write_text(f'<html><head><meta charset="utf-8"><script src="{mj}"></script></head><body>{body}</body></html>')
    dom = _dom(page)
    assert not dom["pwned"] and dom["handlers"] == 0 and dom["js_links"] == 0 and dom["payload_scripts"] == 0, dom
    assert dom["q"] == 0 and dom["shown"] and dom["typeset"] >= 1, dom  # \boxed{5} typeset, the payloads text
