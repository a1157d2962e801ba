"""Cells side by side: the thread allocation, and the Ray executor against the local one.

Part 1, one rollout batch (vLLM, SmolLM2-135M, 8 MATH prompts x 2 x 48 tokens forced full length)
alone and beside a busy single-threaded process, with the threads a cell used before the fix (every
core, pinned: vLLM's default) and after it, as a Ray cell given one core of two runs it (1 thread,
not pinned). A fresh process per setting (vLLM fixes its threads for the process it lives in); the
settings alternate and repeat because this machine's speed drifts.

Part 2, the wall time of a 2-cell tiny grid (random 2-layer SmolLM2-shaped model, 6 steps):
the local executor (one cell at a time, all cores) vs Ray with 2 workers of 1 core, alternating.

Results: bench/results/threads.json and a table on stdout. Usage: python bench/threads.py [--repeats 2]
"""

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROMPTS, N, TOKENS = 8, 2, 48
TINY = ["steps=6", "prompts_per_step=2", "rollouts_per_prompt=2", "max_tokens=12", "eval_problems=3",
        "eval_samples=2", "eval_every=0", "engine=hf", "grade_workers=1", "checkpoint_every=3"]


def _busy() -> None:
    while True:
        pass


def rollout_rates(threads: int, pin: bool, q) -> None:
    """In a fresh process: tokens/s of the batch alone, beside a busy process, alone, beside it."""
    os.environ["RLVR_THREADS"] = str(threads)
    from rlvr_utils.core.config import TrainConfig
    from rlvr_utils.data.sources import prepare_data
    from rlvr_utils.core.hardware import use_threads
    from rlvr_utils.core.models import load_tokenizer, resolve_named
    from rlvr_utils.core.rollouts import SamplingConfig, VLLMEngine

    use_threads()
    if not pin:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
    path = resolve_named("smollm2-135m")
    prompts = prepare_data(TrainConfig(levels="Level 1", prompt="answer_is", eval_problems=0),
                           load_tokenizer(path)).train_prompts[:PROMPTS]
    eng = VLLMEngine(path, max_model_len=1024, seed=0, dtype="float32")
    eng.generate(prompts[:1], 1, SamplingConfig(1.0, 1.0, 4, 4, 0))  # warm-up
    out = {"alone": [], "busy": []}
    for load in ("alone", "busy", "alone", "busy"):
        busy = mp.get_context("fork").Process(target=_busy, daemon=True) if load == "busy" else None
        if busy:
            busy.start()
        t0 = time.perf_counter()
        rolls = eng.generate(prompts, N, SamplingConfig(1.0, 1.0, TOKENS, TOKENS, 0))
        out[load].append(sum(len(r.response_ids) for r in rolls) / (time.perf_counter() - t0))
        if busy:
            busy.terminate()
            busy.join()
    q.put(out)


def grid_seconds(model: str, executor: str) -> float:
    with tempfile.TemporaryDirectory() as runs:
        args = [sys.executable, "-m", "rlvr_utils.cli", "grid", "--runs", runs, "--executor", executor,
                "--set", f"models={model}", "--set", "objectives=psr,nsr", *sum((["--set", s] for s in TINY), [])]
        if executor == "ray":
            args += ["--cpus-per-cell", "1"]
        t0 = time.perf_counter()
        subprocess.run(args, check=True, cwd=REPO, capture_output=True)
        return time.perf_counter() - t0


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "threads.json"))
    a = ap.parse_args()
    from rlvr_utils.core.hardware import bf16_native, cell_threads, cpu_info
    from rlvr_utils.core.models import make_tiny_model, resolve_named

    name, flags = cpu_info()
    cores = cell_threads()
    settings = {"all cores, pinned (before; local default)": (cores, True),
                "all cores, unpinned": (cores, False),
                "1 core, unpinned (a Ray cell's share)": (1, False)}
    rates: dict[str, dict[str, list[float]]] = {s: {"alone": [], "busy": []} for s in settings}
    walls: dict[str, list[float]] = {"local (sequential)": [], "ray (2 workers x 1 core)": []}
    tiny = make_tiny_model(Path(tempfile.mkdtemp()) / "tiny-smollm2", layers=2, hidden=128)
    resolve_named("smollm2-135m")
    for rep in range(a.repeats):
        for s, (threads, pin) in settings.items():
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            p = ctx.Process(target=rollout_rates, args=(threads, pin, q))
            p.start()
            r = q.get()
            p.join()
            for k in r:
                rates[s][k] += r[k]
            print(f"[{rep}] {s}: alone {mean(r['alone']):.1f}, busy {mean(r['busy']):.1f} tok/s", flush=True)
        for ex, key in (("local", "local (sequential)"), ("ray", "ray (2 workers x 1 core)")):
            walls[key].append(grid_seconds(str(tiny), ex))
            print(f"[{rep}] {key}: {walls[key][-1]:.1f} s", flush=True)
    result = {"cpu": name, "avx512_bf16": bf16_native(flags), "cores": cores,
              "batch": f"{PROMPTS} prompts x {N} x {TOKENS} tokens (vLLM, fp32)",
              "rollout_tokens_s": {s: {k: mean(v) for k, v in d.items()} for s, d in rates.items()},
              "rollout_raw": rates, "grid_seconds": {k: mean(v) for k, v in walls.items()}, "grid_raw": walls}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    print(f"\n{name} (avx512_bf16: {bf16_native(flags)}), {cores} cores")
    print("| rollout batch | alone tok/s | beside a busy process tok/s | busy / alone |\n|---|---|---|---|")
    for s, d in result["rollout_tokens_s"].items():
        print(f"| {s} | {d['alone']:.1f} | {d['busy']:.1f} | {d['busy'] / d['alone']:.2f} |")
    g = result["grid_seconds"]
    lo, ry = g["local (sequential)"], g["ray (2 workers x 1 core)"]
    print(f"\n2-cell tiny grid: local {lo:.1f} s, ray {ry:.1f} s (ray / local {ry / lo:.2f})")


if __name__ == "__main__":
    main()
