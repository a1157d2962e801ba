"""Seconds per RL step by phase (ours) vs TRL's GRPOTrainer at equal work, in the same run.

Work: SmolLM2-135M, 16 prompts x 2 rollouts x <=256 tokens, GRPO advantages, lr 1e-6, one optimizer
step per rollout batch, the same MATH prompts (chat template, system message) and the same
math-verify grading pool as the reward. TRL (pinned in the `bench` extra, installed by `make bench`
only) runs with its CPU defaults (use_cpu, bf16 mixed precision, HF generate). Each side runs in its
own process, ours before and after TRL. Usage: python bench/step.py [--steps 3]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS, N, TOKENS = 16, 2, 256


def ours(steps: int, engine: str, objective: str = "grpo") -> dict:
    from rlvr_utils.core.config import TrainConfig
    from rlvr_utils.train.loop import train

    cfg = TrainConfig(objective=objective, steps=steps, prompts_per_step=PROMPTS, rollouts_per_prompt=N, max_tokens=TOKENS,
                      lr=1e-6, eval_problems=0, checkpoint_every=0, engine=engine, seed=0)
    with tempfile.TemporaryDirectory() as d:
        run = train(cfg, Path(d) / "run", log=lambda m: print(m, file=sys.stderr, flush=True))
        metrics = run.read_metrics()
    keys = ["time_generate", "time_grade", "time_train", "time_sync", "time_total", "tokens_trained", "response_len_mean"]
    return {"side": f"ours ({engine}, {objective})", "steps": [{k: m[k] for k in keys} for m in metrics]}


def trl_side(steps: int) -> dict:
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlvr_utils.core.config import TrainConfig
    from rlvr_utils.core.grading import GradingPool
    from rlvr_utils.core.models import load_tokenizer, resolve_named
    from rlvr_utils.core.prompts import PROMPTS as TEMPLATES
    from rlvr_utils.data.sources import Cursor, prepare_data

    path = resolve_named("smollm2-135m")
    tok = load_tokenizer(path)
    data = prepare_data(TrainConfig(eval_problems=0), tok)
    idx = Cursor(len(data.train), 0).take(PROMPTS * steps)  # the same problems, in the same order, as ours
    t = TEMPLATES["paper"]
    rows = [{"prompt": [{"role": "system", "content": t.system},
                        {"role": "user", "content": t.user.format(problem=data.train[i].problem)}],
             "gold": data.train[i].gold} for i in idx]
    pool = GradingPool(workers=2)

    def reward(completions, gold, **_):
        return [g.reward for g in pool.grade([c[0]["content"] for c in completions], gold)]

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t0)

    with tempfile.TemporaryDirectory() as d:
        args = GRPOConfig(output_dir=d, use_cpu=True, bf16=True, per_device_train_batch_size=PROMPTS * N,
                          num_generations=N, max_completion_length=TOKENS, learning_rate=1e-6, max_steps=steps,
                          temperature=1.0, logging_steps=1, report_to=[], save_strategy="no", seed=0,
                          shuffle_dataset=False)
        trainer = GRPOTrainer(model=path, reward_funcs=reward, args=args, train_dataset=Dataset.from_list(rows),
                              processing_class=tok, callbacks=[Clock()])
        trainer.train()
    pool.close()
    return {"side": f"trl {trl.__version__}", "steps": [{"time_total": x} for x in times]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--child", default=None)
    # grpo skips zero-advantage samples (all-wrong groups: no forward at all); w_reinforce trains every
    # sample, the same training work TRL always does
    ap.add_argument("--objectives", default="grpo,w_reinforce")
    a = ap.parse_args()
    if a.child:
        res = ours(a.steps, a.engine, a.objectives.split(",")[0]) if a.child == "ours" else trl_side(a.steps)
        print("RESULT " + json.dumps(res), flush=True)
        return
    results = []
    objs = a.objectives.split(",")
    for side, obj in (("ours", objs[0]), ("trl", ""), ("ours", objs[-1])):
        p = subprocess.run([sys.executable, __file__, "--child", side, "--steps", str(a.steps), "--engine", a.engine,
                            "--objectives", obj or objs[0]],
                           capture_output=True, text=True, env=os.environ)
        line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
        if p.returncode or not line:
            print(p.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"{side} failed")
        results.append(json.loads(line[-1][7:]))
        r = results[-1]
        print(r["side"], json.dumps(r["steps"]), flush=True)

    def med(r):  # the first step of each side includes warm-up
        xs = sorted(s["time_total"] for s in r["steps"][1:] or r["steps"])
        return xs[len(xs) // 2]

    t = [med(r) for r in results if r["side"].startswith("trl")][0]
    for r in results:
        if r["side"].startswith("ours"):
            print(f"s/step (median after warm-up): {r['side']} {med(r):.1f} vs TRL {t:.1f}  ->  TRL/ours = {t / med(r):.2f}x")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "step.json").write_text(json.dumps({"args": vars(a), "results": results}, indent=2))


if __name__ == "__main__":
    main()
