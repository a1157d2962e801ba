"""HF-engine rollout throughput for Qwen2.5-0.5B/1.5B/3B-shaped models on a GPU (random weights, no download).

The original study's batch: 32 prompts x 2 samples x 512 tokens, bf16. Generation is forced to the
full 512 tokens (random weights rarely emit EOS at a useful rate), so tokens/s is comparable across
sizes. Reports tokens/s and peak GPU memory. vLLM is not installed on the lent GPU machines, so this
measures our HF fallback engine. Smoke-test on CPU: python bench/gpu_rollouts.py --device cpu --tiny
"""

import argparse
import json
import time

import torch

from rlvr_utils.core.rollouts import HFEngine, SamplingConfig

# Published Qwen2.5-*-Instruct shapes (config.json on the hub)
SHAPES = {
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2),
    "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                         num_key_value_heads=2),
    "qwen2.5-3b": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                       num_key_value_heads=2),
}


class IdsOnly:
    """The engine's tokenizer needs: EOS/pad ids and decode (texts are not measured here)."""

    eos_token_id = 151645
    pad_token_id = 151643

    def decode(self, ids, skip_special_tokens=True):
        return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="2 layers, for a CPU smoke test")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--prompt-len", type=int, default=150)
    a = ap.parse_args()
    from transformers import Qwen2Config, Qwen2ForCausalLM

    rows = []
    for name, shape in SHAPES.items():
        if a.tiny:
            shape = {**shape, "num_hidden_layers": 2}
        cfg = Qwen2Config(vocab_size=151936, max_position_embeddings=32768, rope_theta=1e6, tie_word_embeddings=True,
                          eos_token_id=151645, **shape)
        torch.manual_seed(0)
        with torch.device(a.device):
            model = Qwen2ForCausalLM(cfg).to(torch.bfloat16).eval()
        eng = HFEngine(model, IdsOnly(), batch_size=a.prompts * a.n)
        g = torch.Generator().manual_seed(0)
        prompts = torch.randint(0, 150000, (a.prompts, a.prompt_len), generator=g).tolist()
        sp = SamplingConfig(1.0, 1.0, a.max_tokens, a.max_tokens, 0)
        eng.generate(prompts[:2], 1, SamplingConfig(1.0, 1.0, 8, 8, 0))  # warm-up
        if a.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        rolls = eng.generate(prompts, a.n, sp)
        if a.device == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        toks = sum(len(r.response_ids) for r in rolls)
        rows.append({"model": name, "params_b": sum(p.numel() for p in model.parameters()) / 1e9, "tokens": toks,
                     "seconds": round(dt, 2), "tokens_s": round(toks / dt, 1),
                     "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if a.device == "cuda" else None})
        print(json.dumps(rows[-1]), flush=True)
        del model, eng
        if a.device == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
