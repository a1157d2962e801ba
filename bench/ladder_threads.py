"""Pretraining a family build: one process on every core against one thread a core, side by side.

`rlvr family --builds` pretrains a ladder's builds one after another on every core and measures their priors side
by side, one core each. This measures the first half of that choice: the pretraining step of a size (AdamW, a
batch of 32 x 140 tokens, the corpus's mean padded shape) at 2 threads, at 1 thread, and as two 1-thread processes
at once, one core each. A fresh process per setting; the settings alternate and repeat (this machine's speed
drifts). Results: bench/results/ladder_threads.json and a table on stdout.

Usage: python bench/ladder_threads.py [--sizes 1m 3m] [--steps 15] [--repeats 2] [--out FILE]
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEP = """
import sys, time, torch
from transformers import LlamaForCausalLM
from rlvr_utils.core.optim import adamw_with_warmup, lm_step
from rlvr_utils.priors.family import model_config
size, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
m = LlamaForCausalLM(model_config(size, 332, 0, 1)).train()
opt, sched = adamw_with_warmup(m.parameters(), 1e-3, (0.9, 0.95), 0.1, 100)
ids = torch.randint(2, 332, (32, 140))
for i in range(steps + 2):  # two warm-up steps
    if i == 2:
        t0 = time.perf_counter()
    lm_step(m, opt, m(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss, sched)
print(32 * 140 * steps / (time.perf_counter() - t0))
"""


def rate(size: str, threads: int, steps: int, core: int | None = None) -> subprocess.Popen:
    pin = ["taskset", "-c", str(core)] if core is not None else []
    return subprocess.Popen([*pin, sys.executable, "-c", STEP, size, str(threads), str(steps)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def tokens_s(procs: list[subprocess.Popen]) -> float:
    return sum(float(p.communicate()[0].split()[-1]) for p in procs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["1m", "3m"])
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "ladder_threads.json"))
    a = ap.parse_args()
    from rlvr_utils.core.hardware import cpu_info

    rows = []
    for size in a.sizes:
        for rep in range(a.repeats):
            two = tokens_s([rate(size, 2, a.steps)])
            one = tokens_s([rate(size, 1, a.steps)])
            lanes = tokens_s([rate(size, 1, a.steps, core) for core in (0, 1)])
            rows.append({"size": size, "repeat": rep, "two_threads": two, "one_thread": one, "two_lanes": lanes})
            print(f"{size} #{rep}: 2 threads {two:,.0f} tok/s, 1 thread {one:,.0f} (2 threads = {two / one:.2f}x), "
                  f"two 1-thread lanes {lanes:,.0f} ({lanes / two:.2f}x one 2-thread process)", flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    name, flags = cpu_info()
    out.write_text(json.dumps({"cpu": name, "avx512_bf16": "avx512_bf16" in flags, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
