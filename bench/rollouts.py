"""Rollout throughput: vLLM vs the HF engine on the original study's batch (32 prompts x 2, 512 tokens).

Each measurement runs in a fresh child process (vLLM binds OpenMP threads for its whole process),
alternating engines and repeating, since this machine's speed swings minute to minute. Reports
generated tokens/s (warm: after one small warm-up call), start-up seconds and peak RSS.
Usage: python bench/rollouts.py [--repeats 2] [--prompts 32] [--n 2] [--max-tokens 512]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def child(engine: str, prompts: int, n: int, max_tokens: int) -> None:
    from rlvr_utils.core.config import TrainConfig
    from rlvr_utils.core.models import load_policy, load_tokenizer, resolve_named
    from rlvr_utils.core.engines import make_engine
    from rlvr_utils.core.rollouts import SamplingConfig
    from rlvr_utils.data.sources import prepare_data

    path = resolve_named("smollm2-135m")
    tok = load_tokenizer(path)
    data = prepare_data(TrainConfig(eval_problems=0), tok)
    ps = data.train_prompts[:prompts]
    t0 = time.perf_counter()
    policy = load_policy(path) if engine == "hf" else None
    eng = make_engine(engine, path, policy=policy, tokenizer=tok, max_model_len=2048, seed=0)
    eng.generate(ps[:2], 1, SamplingConfig(1.0, 1.0, 8, 0, 0))  # warm-up
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    rolls = eng.generate(ps, n, SamplingConfig(1.0, 1.0, max_tokens, 0, 1))
    dt = time.perf_counter() - t0
    toks = sum(len(r.response_ids) for r in rolls)
    print(json.dumps({"engine": engine, "tokens": toks, "seconds": dt, "tokens_s": toks / dt, "startup_s": startup,
                      "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                      "samples": len(rolls)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--child", default=None)
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.prompts, a.n, a.max_tokens)
    rows = []
    for rep in range(a.repeats):
        for engine in ("vllm", "hf"):
            p = subprocess.run([sys.executable, __file__, "--child", engine, "--prompts", str(a.prompts), "--n", str(a.n),
                                "--max-tokens", str(a.max_tokens)], capture_output=True, text=True, env=os.environ)
            line = [x for x in p.stdout.splitlines() if x.startswith("{")]
            if p.returncode or not line:
                print(p.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{engine} child failed")
            rows.append({"repeat": rep, **json.loads(line[-1])})
            print(json.dumps(rows[-1]), flush=True)
    v = [r["tokens_s"] for r in rows if r["engine"] == "vllm"]
    h = [r["tokens_s"] for r in rows if r["engine"] == "hf"]
    ratios = [x / y for x, y in zip(v, h)]
    print(f"vLLM {max(v):.0f} tok/s vs HF engine {max(h):.0f} tok/s (best of {a.repeats}); "
          f"per-pair ratio {', '.join(f'{r:.2f}x' for r in ratios)}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "rollouts.json").write_text(json.dumps({"args": vars(a), "runs": rows, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
