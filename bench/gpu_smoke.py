"""The smoke a lent GPU runs first (bench/gpu_check.sh): one table, each stage in a process of its own, in order.

vLLM allows one sleep-mode (cuMem) engine per process (`vllm/v1/worker/gpu_worker.py`), and every grid cell runs
one engine in its own kernel, so each stage that starts an engine gets a fresh process, as a cell does:

1. health (no engine): torch and its CUDA build, the CUDA runtime wheel, the driver and the CUDA it supports, the
   card and its compute capability, free memory, a C compiler and Python's headers, vLLM's version;
2. a Qwen2.5-0.5B-shaped model in a vLLM engine with sleep mode, as the trainer runs it: sample (the engine then
   sleeps) -> move the policy -> sync -> sample: the synced gap at bf16 rounding, the stale gap (the first
   samples against the moved policy) far above; then the `_stale` path (move again, sample with no sync: the wake
   reloads from the policy); free memory while asleep beside the plan's asleep residue; then finish reasons on
   64 samples with Qwen's tokenizer and its two EOS ids (every "stop" ends on one);
3. two `paper` steps of Qwen2.5-3B x GRPO through the real trainer (sleep -> update -> sync -> sample), responses
   forced to 3072 tokens, memory by phase and the peak beside the memory plan, the sync guard on.

Random weights (published shapes, no download), generated problems (no data travels); Qwen's tokenizer when this
machine has it (`--tokenizer`, or the hub cache), else a byte-level stand-in with Qwen's special-token ids.
docs/gpu.md says how to read the table. CPU dry run (tests/test_bench.py):
    python bench/gpu_smoke.py --device cpu --tiny --engine hf
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = {"health": "1 health", "engine": "2 vLLM sleep, sync", "paper": "3 paper steps"}
ROWS: list[dict] = []


def row(stage: str, what: str, value, expect: str = "", ok: bool | None = None) -> None:
    ROWS.append({"stage": stage, "what": what, "value": value, "expect": expect,
                 "verdict": "" if ok is None else ("ok" if ok else "CHECK")})
    print(json.dumps(ROWS[-1]), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="2-layer models and tiny batches: the CPU dry run")
    ap.add_argument("--engine", default="auto", help="auto (vLLM where installed) | vllm | hf (the CPU dry run)")
    ap.add_argument("--prompts", type=int, default=None,
                    help="prompts per `paper` step, x 8 samples (default: 16 with vLLM, 2 with the HF engine)")
    ap.add_argument("--tokenizer", default=None, help="a folder with Qwen2.5's tokenizer (default: the hub cache's)")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--stage-timeout", type=int, default=420, help="seconds a stage may take")
    ap.add_argument("--out", default=None, help="also write the table's rows as JSON here")
    ap.add_argument("--stage", default=None, help=argparse.SUPPRESS)  # a child: run this stage, rows to --rows
    ap.add_argument("--rows", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.stage:
        import smoke_stages  # the child's only: the parent never touches the GPU

        try:
            getattr(smoke_stages, a.stage)(a, row)
        finally:
            Path(a.rows).write_text(json.dumps(ROWS))
        return
    with tempfile.TemporaryDirectory() as work:
        for stage in a.stages.split(","):
            rows = Path(work) / f"{stage}.json"
            cmd = [sys.executable, __file__, *sys.argv[1:], "--stage", stage, "--rows", str(rows), "--work", work]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
            t0 = time.perf_counter()
            try:
                p = subprocess.run(cmd, env=env, timeout=a.stage_timeout)
                rc = p.returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            ROWS.extend(json.loads(rows.read_text()) if rows.exists() else [])
            row(STAGES.get(stage, stage), "its process: exit code (seconds)", f"{rc} ({time.perf_counter() - t0:.0f} s)",
                "0", rc == 0)
    print("\n| stage | what | value | expect | verdict |\n|---|---|---|---|---|")
    for r in ROWS:
        print(f"| {r['stage']} | {r['what']} | {r['value']} | {r['expect']} | {r['verdict']} |")
    if a.out:
        Path(a.out).write_text(json.dumps(ROWS, indent=2))


if __name__ == "__main__":
    main()
