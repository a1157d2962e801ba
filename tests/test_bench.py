"""The GPU bench scripts run end to end on the CPU (their dry run): the smoke a lent GPU runs first stays ready."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real models, papermill, vLLM or the grading pool: `make test`, not test-fast

REPO = Path(__file__).resolve().parents[1]


def test_the_gpu_smoke_dry_runs_on_cpu(tmp_path):
    """bench/gpu_smoke.py is what a lent GPU runs first (bench/gpu_check.sh); its CPU dry run takes every stage
    through the same code, each in a process of its own: health, the engine's sync (before, stale, synced) and
    finish reasons, two paper GRPO steps of the real trainer."""
    import json
    import os

    out = tmp_path / "rows.json"
    p = subprocess.run([sys.executable, "bench/gpu_smoke.py", "--device", "cpu", "--tiny", "--engine", "hf",
                        "--out", str(out)], capture_output=True, text=True, timeout=1500, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'bench'}"})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    rows = json.loads(out.read_text())
    stages = {r["stage"] for r in rows}
    assert stages == {"1 health", "2 vLLM sleep, sync", "3 paper steps", "4 finish reasons"}
    assert all(r["verdict"] != "CHECK" for r in rows), [r for r in rows if r["verdict"] == "CHECK"]
    assert sum(r["what"].startswith("its process") and r["verdict"] == "ok" for r in rows) == 3  # one process a stage
    sync = next(r for r in rows if r["what"].startswith("policy vs hf log-prob"))
    assert sync["verdict"] == "ok"  # the bf16 copy goes stale, then syncs
    assert next(r for r in rows if r["stage"] == "4 finish reasons")["verdict"] == "ok"
    assert sum(r["what"].startswith("step ") and "seconds" in r["what"] for r in rows) == 2  # two paper steps
    assert "| stage | what | value | expect | verdict |" in p.stdout


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
    # the paper's schedule: 8 kept samples in mini-batches of 4 -> 2 optimizer steps, micro-batches by a token budget
    assert row["samples"] == 8 and row["micro_tokens"] == 64 and row["checkpointing"] is True
    assert row["objective"] == "grpo"  # the paper grid's heaviest cell: GRPO's KL loss adds a reference policy
    assert "reference policy (bf16)" in p.stdout and "HF engine" not in p.stdout, p.stdout[-2000:]
    assert "update 2:" in p.stdout and "2 optimizer steps" in p.stdout, p.stdout[-2000:]
    assert row["train_tokens_s"] > 0 and row["plan_update_peak_gb"] > 0


@pytest.mark.parametrize("args,keys", [
    (["--engines", "static,hf", "--repeats", "1", "--problems", "2", "--samples", "2"], ("summary",)),
    (["--evaluate", "8", "--problems", "2"], ("pass_at_1", "pass_at_8", "seconds")),
])
def test_the_sampler_bench_runs_on_a_committed_rung(args, keys, tmp_path):
    """bench/sampler.py, both modes, on the committed 1m rung at a toy scale: the numbers docs/performance quotes
    come from code that still runs against the package (its many-sample mode goes through `evaluate_protocols`)."""
    import json
    import os

    out = tmp_path / "sampler.json"
    p = subprocess.run([sys.executable, "bench/sampler.py", "--rungs", "1m-s0-09cd6630/t1000000", "--threads", "1",
                        *args, "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert all(k in r for k in keys), sorted(r)


def test_the_onednn_bench_runs_both_ways(tmp_path):
    """bench/onednn.py at a toy scale: both ways measured on the committed 1m rung (the oneDNN-vs-MKL rates
    docs/performance quotes)."""
    import json
    import os

    out = tmp_path / "onednn.json"
    p = subprocess.run([sys.executable, "bench/onednn.py", "--rungs", "1m-s0-09cd6630/t1000000", "--repeats", "1",
                        "--problems", "2", "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0, p.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    assert {r["way"] for r in runs} == {"blas", "onednn"}
    assert all(r["gemm_gflops"] > 0 and r["tokens_s"] > 0 and r["update_s"] > 0 for r in runs)


def test_the_ladder_threads_bench_runs(tmp_path):
    """bench/ladder_threads.py at a toy scale: the pretraining rates docs/performance quotes for `--builds`."""
    import json

    out = tmp_path / "ladder.json"
    p = subprocess.run([sys.executable, "bench/ladder_threads.py", "--sizes", "1m", "--steps", "1", "--repeats", "1",
                        "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    row = json.loads(out.read_text())["rows"][0]
    assert row["size"] == "1m" and min(row["two_threads"], row["one_thread"], row["two_lanes"]) > 0
