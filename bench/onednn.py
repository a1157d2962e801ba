"""oneDNN's linear against torch's BLAS call (MKL) for the family's fp32 products (`core.matmul`): the GEMM rate at
the models' own shapes, the static engine's sampling rate and the trainer's forward + backward of a micro-batch,
each with and without oneDNN, the two ways alternating in one process (this machine's speed drifts).

python bench/onednn.py [--rungs 1m-s0-09cd6630/t1000000,7m-s0-80643cc7/t2000000] [--repeats 3] [--threads 1]
-> a table, and bench/results/onednn.json
"""

import argparse
import contextlib
import json
import random
import statistics
import time
from pathlib import Path

import torch

from sampler import REPO, RUNGS, gemm_rates, requests

from rlvr_utils.core import matmul
from rlvr_utils.core.hardware import cpu_info, use_threads
from rlvr_utils.core.losses import response_logprobs
from rlvr_utils.core.models import load_policy
from rlvr_utils.core.sampler import StaticEngine


def sampling(engine, prompts, sps) -> float:
    t0 = time.perf_counter()
    s = engine.sample(prompts, 1, sps)
    return int(s.lengths.sum()) / (time.perf_counter() - t0)


def update(policy, prompts, responses) -> float:
    """Seconds of one micro-batch's forward and backward, as the trainer runs it."""
    policy.zero_grad()
    t0 = time.perf_counter()
    lp, _, _ = response_logprobs(policy, prompts, responses)
    lp.sum().backward()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rungs", default="1m-s0-09cd6630/t1000000,7m-s0-80643cc7/t2000000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "onednn.json"))
    a = ap.parse_args()
    threads = use_threads(a.threads)
    name, flags = cpu_info()
    rng = random.Random(0)
    rows = []
    for rung in a.rungs.split(","):
        path = str(RUNGS / rung)
        tok, prompts, sps = requests(path, a.problems, 32)
        policy = load_policy(path)
        engine = StaticEngine(policy.eval(), tok)
        engine.sample(prompts[:64], 1, sps[:64])  # warm-up
        # a micro-batch of the trainer's shape: 32 samples of the family's prompt and response lengths
        mb = ([prompts[i] for i in range(32)], [[rng.randrange(3, policy.config.vocab_size) for _ in range(rng.randrange(10, 64))]
                                               for _ in range(32)])
        for rep in range(a.repeats):
            gemm = gemm_rates(policy.config, torch.float32)  # both ways' rates: {"blas": ..., "onednn": ...}
            for way in (("onednn", "blas") if rep % 2 == 0 else ("blas", "onednn")):
                with matmul.without_onednn() if way == "blas" else contextlib.nullcontext():
                    rows.append({"rung": rung, "repeat": rep, "way": way, "gemm_gflops": gemm[way][0] / 1e9,
                                 "tokens_s": sampling(engine, prompts, sps), "update_s": update(policy, *mb)})
                print(json.dumps(rows[-1]), flush=True)
    out = {"cpu": name, "avx512_bf16": "avx512_bf16" in flags, "threads": threads, "problems": a.problems, "runs": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(f"\n{name} (avx512_bf16 {out['avx512_bf16']}), {threads} thread(s), fp32; median of {a.repeats}, alternating")
    print("| rung | products | GEMM GFLOP/s | static engine tokens/s | update forward+backward (s) |\n|---|---|---|---|---|")
    for rung in a.rungs.split(","):
        for way in ("blas", "onednn"):
            rs = [r for r in rows if r["rung"] == rung and r["way"] == way]
            med = {k: statistics.median(r[k] for r in rs) for k in ("gemm_gflops", "tokens_s", "update_s")}
            print(f"| {rung} | {way} | {med['gemm_gflops']:.0f} | {med['tokens_s']:,.0f} | {med['update_s']:.3f} |")


if __name__ == "__main__":
    main()
