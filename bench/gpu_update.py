"""The update alone at a profile's full batch on one GPU: peak memory against the memory plan, and speed.

`bench/gpu_step.py` goes through the whole trainer, so the `paper` profile's 3072-token responses cost
minutes of HF-engine sampling a step (the device has no vLLM) before the update the memory plan is
about. This script skips sampling: it builds the policy and optimizer as the trainer does
(`update.build_learner`) and runs the real `update.update_policy` twice on a full-length batch of random
token ids (the worst case for memory: every sample as long as the profile allows, every one trained).
Qwen2.5-shaped random weights, as in gpu_step.py. The objective defaults to the profile's heaviest:
GRPO where its cells add a KL loss (a frozen fp32 reference and its forward). The plan is taken as the
profile runs: vLLM asleep while the policy trains, so no engine is resident during the update. Printed
per model: seconds per update, tokens/s, model FLOP utilisation, measured peak GPU memory (allocated
and reserved) and the plan's update peak beside it. Peak memory depends on the micro-batch, not on how
many prompts there are: `--prompts 32` keeps the paper's several mini-batches at half the time.

GPU:       python bench/gpu_update.py --profile paper --models qwen2.5-3b --prompts 32
           (or BENCH=gpu_update bash bench/gpu_check.sh --profile paper --models qwen2.5-3b --prompts 32)
CPU smoke: python bench/gpu_update.py --device cpu --tiny --profile paper
"""

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

import torch
from gpu_rollouts import SHAPES  # published Qwen2.5-*-Instruct shapes (bench/ is on the path of a bench script)
from gpu_step import build_model, mfu, print_table, update_flops

from rlvr_utils.core.config import TrainConfig
from rlvr_utils.grid.profiles import PROFILES
from rlvr_utils.core.hardware import memory_plan, micro_words
from rlvr_utils.core.hardware import resolve as resolve_hardware
from rlvr_utils.core.rollouts import Rollout
from rlvr_utils.train.loop import build_learner
from rlvr_utils.core.update import update_policy


def full_batch(cfg: TrainConfig, vocab: int, prompt_tokens: int, seed: int = 0) -> list[Rollout]:
    """prompts x rollouts samples of random ids: `prompt_tokens` of prompt, `max_tokens` of response."""
    g = torch.Generator().manual_seed(seed)
    ids = lambda n: torch.randint(0, vocab, (n,), generator=g).tolist()
    return [Rollout(p, j, ids(prompt_tokens), ids(cfg.max_tokens), [0.0] * cfg.max_tokens, "", "length")
            for p in range(cfg.prompts_per_step) for j in range(cfg.rollouts_per_prompt)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="2 layers and a small batch: a CPU smoke test")
    gpu_profiles = [k for k, v in PROFILES.items() if any(m in SHAPES for m in v.models)]
    ap.add_argument("--profile", default="paper", choices=gpu_profiles)
    ap.add_argument("--objective", default=None, help="default: grpo where the profile gives it a KL loss, else w_reinforce")
    ap.add_argument("--models", default=None, help="default: the profile's Qwen2.5 models")
    ap.add_argument("--prompts", type=int, default=None, help="prompts per step (default: the profile's)")
    ap.add_argument("--prompt-tokens", type=int, default=None,
                    help="prompt length of every sample (default: the profile's max_prompt_tokens, the plan's worst case)")
    ap.add_argument("--micro-batch", type=int, default=None, help="micro-batch size in samples (instead of a token budget)")
    ap.add_argument("--micro-tokens", type=int, default=None, help="micro-batch token budget (default: the profile's)")
    ap.add_argument("--out", default=None, help="also write the rows as JSON here")
    a = ap.parse_args()
    cuda = a.device.startswith("cuda")
    spec = PROFILES[a.profile]
    p = dict(spec.params)
    if a.tiny:
        p.update(prompts_per_step=2, max_tokens=8, mini_batch_size=min(p.get("mini_batch_size", 0), 4),
                 micro_batch_tokens=min(p.get("micro_batch_tokens", 0), 64))
    if a.prompts:
        p["prompts_per_step"] = a.prompts
    if a.micro_batch:
        p.update(micro_batch_size=a.micro_batch, micro_batch_tokens=0)
    if a.micro_tokens is not None:
        p["micro_batch_tokens"] = a.micro_tokens
    objective = a.objective or ("grpo" if spec.per_objective.get("grpo", {}).get("kl_coef") else "w_reinforce")
    p.update(spec.per_objective.get(objective, {}))
    # the plan as the profile runs: vLLM asleep while training, so no engine is resident in the update
    cfg = TrainConfig.from_dict({**p, "objective": objective, "device": a.device, "eval_problems": 0,
                                 "engine": "vllm", "vllm_sleep": True}, strict=False)
    models = a.models.split(",") if a.models else [m for m in spec.models if m in SHAPES]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            path = build_model(name, Path(tmp) / name, a.tiny, a.device)
            from transformers import AutoConfig

            mc = AutoConfig.from_pretrained(path)
            hw = resolve_hardware(cfg.device, cfg.precision)
            c = cfg.replace(model=str(path), device=hw.device, precision=hw.precision)
            plan = memory_plan(mc, c, hw)
            prompt_tokens = a.prompt_tokens or (8 if a.tiny else c.max_prompt_tokens)
            print(f"[{name}] {a.profile}: {c.prompts_per_step} x {c.rollouts_per_prompt} samples of "
                  f"{prompt_tokens} + {c.max_tokens} tokens, micro-batches of {micro_words(c)}, "
                  f"checkpointing {c.gradient_checkpointing}\n{plan}", flush=True)
            policy, ref, opt, sched = build_learner(c, str(path))
            rolls = full_batch(c, mc.vocab_size, prompt_tokens)
            adv = torch.tensor([1.0 if i % 2 else -1.0 for i in range(len(rolls))])  # every sample trains
            keep = torch.ones(len(rolls), dtype=torch.bool)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            times = []
            for step in (1, 2):  # the second is warm
                t0 = time.perf_counter()
                st = update_policy(c, policy, ref, opt, sched, rolls, adv, keep, step)
                if cuda:
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
                print(f"[{name}] update {step}: {times[-1]:.1f} s, {st['optimizer_steps']} optimizer steps, "
                      f"{st['tokens_trained']} tokens", flush=True)
            peak = torch.cuda.max_memory_allocated() / 1e9 if cuda else None
            reserved = torch.cuda.max_memory_reserved() / 1e9 if cuda else None
            resp = st["tokens_trained"]
            forwards = int(st["optimizer_steps"] > 1) + int(ref is not None)  # old log-probs; the reference
            flops = update_flops(plan.params, mc.vocab_size * mc.hidden_size, len(rolls) * prompt_tokens, resp, forwards)
            card = torch.cuda.get_device_name(a.device) if cuda else hw.name
            row = {"model": name, "profile": a.profile, "objective": objective, "device": card, "precision": hw.precision,
                   "samples": len(rolls), "tokens_per_sample": prompt_tokens + c.max_tokens,
                   "micro_batch": 0 if c.micro_batch_tokens else c.micro_batch_size, "micro_tokens": c.micro_batch_tokens,
                   "ref_precision": c.ref_precision, "checkpointing": c.gradient_checkpointing,
                   "update_s": round(times[-1], 2), "first_update_s": round(times[0], 2),
                   "train_tokens_s": round(resp / times[-1], 1),
                   "update_mfu": mfu(flops, times[-1], card), "code": "losses.SelectedLogprobs",
                   "peak_gb": round(peak, 2) if peak is not None else None,
                   "reserved_gb": round(reserved, 2) if reserved is not None else None,
                   "plan_update_peak_gb": round(plan.update_peak / 1e9, 4)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if a.out:
                Path(a.out).write_text(json.dumps(rows, indent=2))
            del policy, ref, opt, sched
            gc.collect()  # a cycle left alive would carry this model's memory into the next one's peak
            if cuda:
                torch.cuda.empty_cache()
    print_table(rows)


if __name__ == "__main__":
    main()
