"""The GPU bench scripts run end to end on the CPU (their dry run): the smoke a lent GPU runs first stays ready."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real models, papermill, vLLM or the grading pool: `make test`, not test-fast

REPO = Path(__file__).resolve().parents[1]


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
