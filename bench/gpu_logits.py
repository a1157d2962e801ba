"""Peak memory of the vocabulary head and the log-prob/entropy maths alone, per micro-batch.

The memory plan (`hardware.memory_plan`) counts the fp32 logits at response positions as a multiple
of one [micro-batch, response tokens, vocab] fp32 tensor. This measures that multiple for the code as
it is (`losses.token_logprobs` after a bf16 head, as `losses.response_logprobs` runs it): forward and
backward of -mean(log p) (+ an entropy bonus where the profile has one), peak allocated minus what was
allocated before, in units of B·T·V·4 bytes. Qwen2.5's vocabulary (151,936) and a hidden size of 2048.

GPU:       python bench/gpu_logits.py
CPU smoke: python bench/gpu_logits.py --device cpu --tokens 16 --vocab 1000
"""

import argparse
import json
from pathlib import Path

import torch

from rlvr_utils.core.losses import token_logprobs


def head_peak(device: str, batch: int, tokens: int, vocab: int, hidden: int, entropy_grad: bool) -> float:
    """Peak bytes above the start of forward + backward through the head and token_logprobs."""
    g = torch.Generator(device=device).manual_seed(0)
    w = torch.nn.Parameter(torch.randn(vocab, hidden, device=device, generator=g) * 0.02)
    h = torch.randn(batch, tokens, hidden, device=device, generator=g, requires_grad=True)
    tgt = torch.randint(0, vocab, (batch, tokens), device=device, generator=g)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        logits = torch.nn.functional.linear(h, w)
    logp, ent = token_logprobs(logits, tgt, 1.0, entropy_grad)
    del logits
    loss = -logp.mean() - (0.001 * ent.mean() if entropy_grad else 0)
    loss.backward()
    if not cuda:
        return float("nan")
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tokens", type=int, default=3072)
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    rows = []
    for batch in (1, 2):
        for ent in (False, True):
            peak = head_peak(a.device, batch, a.tokens, a.vocab, a.hidden, ent)
            unit = batch * a.tokens * a.vocab * 4
            rows.append({"micro_batch": batch, "tokens": a.tokens, "vocab": a.vocab, "entropy_grad": ent,
                         "peak_gb": round(peak / 1e9, 2), "fp32_logit_copies": round(peak / unit, 2)})
            print(json.dumps(rows[-1]), flush=True)
            if a.device.startswith("cuda"):
                torch.cuda.empty_cache()
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
