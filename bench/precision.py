"""fp32 vs bf16 on this machine, interleaved in one run: rollout and update tokens/s, and what `auto` chose.

SmolLM2-135M-Instruct, real MATH Level-1 prompts. Rollouts: the HF engine (in this process) and vLLM
(a fresh process per precision: vLLM binds its threads for the process it lives in), 8 prompts x 2 x 64
tokens forced full length. Update: one forward+backward of those 16 samples through the trainer's
`response_logprobs` (fp32 master weights; bf16 = autocast). Each measurement is repeated, fp32 and bf16
alternating, because this machine's speed drifts. Results: bench/results/precision.json.
"""

import json
import multiprocessing as mp
import sys
import time
from pathlib import Path


from rlvr_utils.core.config import TrainConfig
from rlvr_utils.data.sources import prepare_data
from rlvr_utils.core.hardware import bf16_native, cpu_info, dtype_name, resolve
from rlvr_utils.core.losses import response_logprobs
from rlvr_utils.core.models import load_policy, load_tokenizer, resolve_named
from rlvr_utils.core.rollouts import HFEngine, SamplingConfig

PROMPTS, N, TOKENS, REPEATS = 8, 2, 64, 2
SP = SamplingConfig(1.0, 1.0, TOKENS, TOKENS, 0)


def vllm_rate(path: str, prompts: list, precision: str, q) -> None:
    from rlvr_utils.core.rollouts import VLLMEngine

    eng = VLLMEngine(path, max_model_len=1024, seed=0, dtype=dtype_name(precision))
    eng.generate(prompts[:1], 1, SamplingConfig(1.0, 1.0, 4, 4, 0))  # warm-up
    t0 = time.perf_counter()
    rolls = eng.generate(prompts, N, SP)
    q.put(sum(len(r.response_ids) for r in rolls) / (time.perf_counter() - t0))


def main() -> None:
    name, flags = cpu_info()
    path = resolve_named("smollm2-135m")
    tok = load_tokenizer(path)
    cfg = TrainConfig(levels="Level 1", prompt="answer_is", eval_problems=0)
    prompts = prepare_data(cfg, tok).train_prompts[:PROMPTS]
    policy = load_policy(path)
    rows: dict[str, dict[str, list[float]]] = {p: {"hf_rollout": [], "vllm_rollout": [], "update": []}
                                              for p in ("fp32", "bf16")}
    rolls = HFEngine(policy, tok, dtype="float32").generate(prompts, N, SP)  # fixed samples for the update
    for rep in range(REPEATS):
        for prec in ("fp32", "bf16"):
            eng = HFEngine(policy, tok, dtype=dtype_name(prec))
            t0 = time.perf_counter()
            out = eng.generate(prompts, N, SP)
            rows[prec]["hf_rollout"].append(sum(len(r.response_ids) for r in out) / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            lp, mask, _ = response_logprobs(policy, [r.prompt_ids for r in rolls], [r.response_ids for r in rolls],
                                            bf16=prec == "bf16")
            (-lp.sum() / mask.sum()).backward()
            policy.zero_grad(set_to_none=True)
            rows[prec]["update"].append(int(mask.sum()) / (time.perf_counter() - t0))
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            p = ctx.Process(target=vllm_rate, args=(path, prompts, prec, q))
            p.start()
            rows[prec]["vllm_rollout"].append(q.get(timeout=1800))
            p.join()
            print(f"repeat {rep} {prec}: " + ", ".join(f"{k} {v[-1]:.1f} tok/s" for k, v in rows[prec].items()),
                  flush=True)
    auto = resolve("cpu", "auto")
    result = {"cpu": name, "avx512_bf16": bf16_native(flags), "auto": auto.precision, "auto_reason": auto.reason,
              "tokens_per_s": rows, "bf16_over_fp32": {k: round(max(rows["bf16"][k]) / max(rows["fp32"][k]), 2)
                                                       for k in rows["fp32"]}}
    print(json.dumps(result, indent=1))
    out = Path(__file__).parent / "results" / "precision.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
