"""Profiles resolve to complete configs: the README's table is theirs, and --dry-run shows every setting."""

import subprocess
import sys
from pathlib import Path

import pytest

from rlvr_utils.config import TrainConfig
from rlvr_utils.grid import PROFILES, cells, resolve_config, settings_diff, settings_table

REPO = Path(__file__).resolve().parents[1]


def test_readme_table_is_the_profiles_resolved_cells():
    assert settings_table() in (REPO / "README.md").read_text(), "README's settings table is stale: paste `rlvr grid --table`"


def test_gpu_profiles_inherit_nothing_from_the_cpu_profile():
    for profile, extraction in (("seed", "boxed"), ("paper", "boxed_or_last_number")):  # paper: its reward's fallback
        for c in cells(profile):
            assert (c.config.levels, c.config.prompt, c.config.extraction) == ("", "paper", extraction), c.name
    seed = cells("seed")[0].config
    assert (seed.adam_beta2, seed.weight_decay, seed.loss_agg, seed.min_tokens) == (0.95, 0.01, "seq_mean", 128)
    paper = {c.config.objective: c.config for c in cells("paper")}
    assert paper["grpo"].kl_coef == 0.001 and all(c.kl_coef == 0 for o, c in paper.items() if o != "grpo")
    assert paper["nsr"].mini_batch_size == 128 and paper["nsr"].entropy_coef == 0.001
    # the notebook's interactive path resolves the same way
    assert resolve_config("seed", {"objective": "nsr"}) == [c.config for c in cells("seed") if c.name.endswith("nsr__s0")][0]
    assert set(PROFILES) == {"cpu", "smoke", "seed", "paper", "prior"}
    assert [c.name for c in cells("prior")][:2] == ["warm-n0__psr__s0", "warm-n0__psr__s1"]


def test_a_lams_axis_multiplies_only_the_objectives_that_read_lam():
    grid = {c.name: c.config for c in cells("prior", {"models": "warm:n=0", "objectives": "psr,w_reinforce",
                                                       "seeds": "0", "lams": "0.1,0.5"})}
    assert sorted(grid) == ["warm-n0__psr__s0", "warm-n0__w_reinforce__s0__lam0.1", "warm-n0__w_reinforce__s0__lam0.5"]
    assert grid["warm-n0__w_reinforce__s0__lam0.5"].lam == 0.5


def test_dry_run_prints_each_cells_resolved_settings(tmp_path):
    p = subprocess.run([sys.executable, "-m", "rlvr_utils.cli", "grid", "--profile", "seed", "--runs", str(tmp_path),
                        "--dry-run"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("pending")]
    assert len(lines) == 9
    for c, ln in zip(cells("seed"), lines):
        assert c.name in ln
        for k, v in settings_diff(c.config).items():
            assert f"{k}={v!r}" in ln
    assert "adam_beta2=0.95" in lines[0] and "Level 1" not in p.stdout
    assert settings_diff(TrainConfig()) == {}


@pytest.mark.slow
def test_gpu_step_bench_runs_on_cpu(tmp_path):
    """bench/gpu_step.py is the script a lent GPU runs; its CPU mode goes through the same trainer code path."""
    import json
    import os

    out = tmp_path / "rows.json"
    p = subprocess.run([sys.executable, "bench/gpu_step.py", "--device", "cpu", "--tiny", "--models", "qwen2.5-0.5b",
                        "--out", str(out)], capture_output=True, text=True, timeout=900, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0, p.stderr[-3000:]
    (row,) = json.loads(out.read_text())
    assert row["model"] == "qwen2.5-0.5b" and row["train_tokens_s"] > 0 and row["gen_tokens_s"] > 0
    assert row["plan_update_peak_gb"] > 0 and row["precision"] in ("fp32", "bf16")
    # --profile: the paper profile's own settings (mini-batches, micro-batches of 1, checkpointing)
    p = subprocess.run([sys.executable, "bench/gpu_step.py", "--device", "cpu", "--tiny", "--models", "qwen2.5-0.5b",
                        "--profile", "paper", "--steps", "1", "--out", str(out)], capture_output=True, text=True,
                       timeout=900, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0, p.stderr[-3000:]
    (row,) = json.loads(out.read_text())
    assert row["profile"] == "paper" and row["steps"] == 1 and row["train_tokens_s"] > 0
    assert "activations, micro-batch 1 x" in p.stdout, p.stdout[-2000:]


@pytest.mark.slow
def test_gpu_update_bench_runs_on_cpu(tmp_path):
    """bench/gpu_update.py: the real update at the paper profile's settings on a full-length random batch."""
    import json
    import os

    out = tmp_path / "rows.json"
    p = subprocess.run([sys.executable, "bench/gpu_update.py", "--device", "cpu", "--tiny", "--profile", "paper",
                        "--models", "qwen2.5-0.5b", "--prompts", "1", "--out", str(out)], capture_output=True, text=True,
                       timeout=900, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0, p.stderr[-3000:]
    (row,) = json.loads(out.read_text())
    # the paper's schedule: 8 kept samples in mini-batches of 4 -> 2 optimizer steps, micro-batches of 1
    assert row["samples"] == 8 and row["micro_batch"] == 1 and row["checkpointing"] is True
    assert row["objective"] == "grpo"  # the paper grid's heaviest cell: GRPO's KL loss adds a reference policy
    assert "reference policy (fp32)" in p.stdout and "HF engine" not in p.stdout, p.stdout[-2000:]
    assert "update 2:" in p.stdout and "2 optimizer steps" in p.stdout, p.stdout[-2000:]
    assert row["train_tokens_s"] > 0 and row["plan_update_peak_gb"] > 0


def test_progress_eta_from_finished_cells_minutes(tmp_path):
    """The grid's ETA: each unfinished cell expected to take what finished cells of its model and
    objective took (else of its model, else of its objective), less what it has done; not steps x a
    rate, since cells of one grid differ several-fold and evaluations are not steps."""
    import json

    from rlvr_utils.executors import Progress
    from rlvr_utils.runs import RunDir, append_jsonl

    grid = cells("prior", {"seeds": "0,1", "objectives": "psr,nsr,w_reinforce", "models": "warm:n=0,warm:n=200,warm:n=1000"})
    work = {"warm-n0__psr__s0": 600.0, "warm-n0__nsr__s0": 3000.0, "warm-n1000__nsr__s0": 1200.0}
    for c in grid:
        run = RunDir(tmp_path / c.name)
        run.path.mkdir()
        run.config.write_text(json.dumps({"model": c.config.model, "objective": c.config.objective}))
        if c.name in work:
            append_jsonl(run.metrics, [{"step": 1, "time_total": work[c.name] - 100.0}])
            append_jsonl(run.evals, [{"step": 20, "seconds": 100.0}])
            run.set_status("done")
    started = RunDir(tmp_path / "warm-n0__nsr__s1")
    append_jsonl(started.metrics, [{"step": 5, "time_total": 1000.0}])
    pending = [c for c in grid if c.name not in work and "w_reinforce" not in c.name and "n200" not in c.name
               or c.name in ("warm-n0__w_reinforce__s0", "warm-n200__psr__s0")]
    line = Progress(tmp_path, pending, print).line()[1]
    # n0 psr s1: 600; n0 nsr s1: 3000 - 1000 done; n1000 psr s0, s1: no n1000 PSR yet, n1000's 1200 each;
    # n1000 nsr s1: 1200; n0 w_reinforce s0: no W-REINFORCE yet, n0's median (600, 3000) = 1800;
    # n200 psr s0: no n200 cell yet, PSR's 600. 600 + 2000 + 1200 + 1200 + 1200 + 1800 + 600 = 8600 s
    assert "ETA 2h23m (from finished cells' minutes)" in line, line
    assert "5/" in line  # steps done so far still counted


def test_allow_new_build_reaches_the_cell_and_no_further(tmp_path, monkeypatch):
    # `rlvr grid --allow-new-build` reaches train() in the notebook kernel as its environment; the papermill
    # call is replaced by one that records what the kernel would inherit (the thing under test is the executor)
    import os

    import papermill

    from rlvr_utils.executors import run_cell
    from rlvr_utils.runs import NEW_BUILD_ENV

    seen = []

    def execute(src, out, **kw):
        seen.append(os.environ.get(NEW_BUILD_ENV))
        Path(out).write_text("{}")

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    monkeypatch.setenv(NEW_BUILD_ENV, "1")  # a stray export must not open every cell
    cell = cells("cpu", {"objectives": "psr", "seeds": "0"})[0]
    assert run_cell(cell, tmp_path, 1).ok and run_cell(cell, tmp_path, 1, allow_new_build=True).ok
    assert seen == ["0", "1"] and os.environ[NEW_BUILD_ENV] == "1"  # and restored afterwards
