"""Every command in README.md's ```bash blocks runs as written: `rlvr` itself, in a scratch folder that stands in for
a fresh clone (the committed family rungs as the rung cache, so no rung is pretrained here). A command not named in
SKIP runs, so a new block is tested by default; SKIP names the expensive ones and why. Commands that build on one
another (a run, then its resume) share the scratch folder, in README order."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TINY_RUN, merge

from rlvr_utils.core.files import CRASH_ENV

README = REPO / "README.md"

# command (as README writes it, comment and continuation lines joined) -> why the suite does not run it
SKIP = {
    "make study": "the smoke study: set-up, a grid and its report (CI's own job)",
    "make test": "the whole suite, this file included",
    "make test-fast": "the unit tests, which the suite runs itself",
    "make lint": "ruff over the checkout (CI's lint job)",
    "make notebooks": "rewrites notebooks/*.ipynb in the checkout (tests/test_notebooks.py checks they match)",
    "make bench": "installs TRL and runs the benchmarks",
    "make lab": "starts a JupyterLab server (tests/study/test_browser.py starts one)",
    "rlvr train --run-dir runs/try/a --set objective=nsr --set steps=10 --set prompts_per_step=8":
        "SmolLM2-135M on MATH: minutes on a CPU; a killed tiny run stands in for it, which the next line resumes",
    "rlvr warmstart --set n=1000": "SFT of SmolLM2-135M on 1,000 solutions: minutes on a CPU",
}


def commands(text: str) -> list[str]:
    """The commands of the ```bash blocks of `text`, in order: continuation lines joined, comments dropped."""
    out = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            cmd = shlex.join(shlex.split(line, comments=True))
            if cmd:
                out.append(cmd)
    return out


def test_the_readme_has_commands_and_skip_names_only_commands_it_has():
    cmds = commands(README.read_text())
    assert len(cmds) >= 10 and set(SKIP) <= set(cmds), set(SKIP) - set(cmds)


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> tuple[Path, dict]:
    """A scratch folder with `rlvr` on PATH; the committed studies as its runs/ would be after their make targets:
    runs/smoke (what `make study` writes) is the committed prior study."""
    root = tmp_path_factory.mktemp("clone")
    shutil.copytree(REPO / "runs" / "prior", root / "runs" / "smoke")
    shutil.copytree(REPO / "runs" / "family-rungs", root / "rungs")
    bindir = root / "bin"
    bindir.mkdir()
    (bindir / "rlvr").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m rlvr_utils.cli \"$@\"\n")
    (bindir / "rlvr").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO), "RLVR_FAMILY_CACHE":
           str(root / "rungs"), "OMP_NUM_THREADS": "1"}
    return root, env


def stand_in_killed_run(root: Path, env: dict) -> None:
    """runs/try/a as a killed run leaves it: a tiny run of a committed rung, killed after its first step's update."""
    rung = REPO / "runs" / "family-rungs" / "1m-s0-09cd6630" / "t1000000"
    sets = [x for s in merge(*TINY_RUN, f"model={rung}", "objective=nsr", "checkpoint_every=1", "steps=3")
            for x in ("--set", s)]
    p = subprocess.run(["rlvr", "train", "--run-dir", "runs/try/a", *sets], cwd=root, capture_output=True, text=True,
                       env={**env, CRASH_ENV: "update:2"}, timeout=300)
    assert p.returncode == -9, p.stderr[-2000:]


@pytest.mark.slow
def test_every_readme_command_runs_as_written(clone):
    root, env = clone
    ran = []
    for cmd in commands(README.read_text()):
        if cmd in SKIP:
            if cmd.startswith("rlvr train --run-dir runs/try/a "):
                stand_in_killed_run(root, env)
            continue
        p = subprocess.run(["bash", "-c", cmd], cwd=root, capture_output=True, text=True, env=env, timeout=600)
        assert p.returncode == 0 and "Traceback" not in p.stderr, f"{cmd}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
        ran.append(cmd)
    assert any(c.startswith("rlvr train --run-dir runs/try/f") for c in ran)
    assert (root / "runs" / "try" / "a" / "status.json").read_text().count('"done"') >= 1  # the resume finished it
