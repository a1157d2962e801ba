"""Grading throughput: the worker pool vs plain single-process math-verify, same 2000 real pairs.

Pairs: reference solutions of the shared MATH subset graded against their own gold (half) and
against another problem's gold (half). Both sides run the same verify_pair; the single-process side
calls it in a loop with math-verify's own (signal) timeouts, the way a hand-rolled script does.
Interleaved and repeated, since this machine's speed swings minute to minute.
Usage: python bench/grading.py [--pairs 2000] [--repeats 2] [--workers 2]
"""

import argparse
import json
import random
import sys
import time
from pathlib import Path

from rlvr_utils.core.config import default_data
from rlvr_utils.data.sources import load_math
from rlvr_utils.core.grading import GradingPool, extract_answer, verify_pair


def pairs(n: int, seed: int = 0):
    probs = load_math(default_data(), "test") + load_math(default_data(), "train")
    probs = [p for p in probs if p.gold]
    rng = random.Random(seed)
    rng.shuffle(probs)
    out = []
    for i, p in enumerate(probs[:n]):
        gold = p.gold if i % 2 == 0 else rng.choice(probs).gold
        out.append((p.solution, gold))
    return out


def single_process(ps):
    from math_verify import parse, verify  # noqa: F401  (imported once, as a script would)

    t0 = time.perf_counter()
    statuses = []
    for sol, gold in ps:
        ext = extract_answer(sol)
        try:
            statuses.append(verify_pair(ext, gold, timeout=5) if ext else "no_answer")
        except Exception:  # noqa: BLE001
            statuses.append("error")
    return time.perf_counter() - t0, statuses


def pooled(pool, ps):
    t0 = time.perf_counter()
    res = pool.grade([s for s, _ in ps], [g for _, g in ps])
    return time.perf_counter() - t0, [r.status for r in res]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    ps = pairs(a.pairs)
    rows = []
    with GradingPool(workers=a.workers, timeout=5.0) as pool:
        pool.grade([r"\boxed{1}"] * a.workers, ["1"] * a.workers)  # workers up before timing
        for rep in range(a.repeats):
            ts, ss = single_process(ps)
            tp, sp = pooled(pool, ps)
            agree = sum(x == y for x, y in zip(ss, sp)) / len(ps)
            rows.append({"repeat": rep, "single_pairs_s": len(ps) / ts, "pool_pairs_s": len(ps) / tp,
                         "ratio": ts / tp, "status_agreement": agree})
            print(json.dumps(rows[-1]), flush=True)
    best = max(r["ratio"] for r in rows)
    med = sorted(r["ratio"] for r in rows)[len(rows) // 2]
    print(f"pool ({a.workers} workers) vs single-process math-verify on {len(ps)} pairs: "
          f"median {med:.2f}x, best {best:.2f}x")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "grading.json").write_text(json.dumps({"pairs": len(ps), "workers": a.workers, "runs": rows}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
