"""Peak memory of one micro-batch's forward + backward, the loss path before and after the memory-lean one, on a CPU.

A Qwen2.5-0.5B-shaped policy with random weights (published shape, 151,936-token vocabulary, no download), fp32
master weights, activation checkpointing and an entropy bonus as the `paper` profile runs them, one sample of
`--prompt` + `--response` random token ids, the on-policy loss -A log pi - 0.001 H. "before" is
`losses.response_logprobs` as it was at commit 70b252e (read from git: the full log-softmax over [T, V] in fp32,
the entropy kept for backward as log p), "after" is the package's own. Each variant runs in a fresh process
(the peak of one process is its own): the peak resident memory above the memory held before the forward
(the model), read from /proc (VmHWM, reset first), and torch's own view is not used (it sees no CPU peaks).
Variants alternate, `--repeats` times each.

    PYTHONPATH=. python bench/update_memory.py --response 3072 --prompt 256 --precision bf16
"""

import argparse
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

OLD = ("70b252e", "rlvr_utils/losses.py")  # the loss path before the memory-lean one
SHAPE = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2)
GB = 1e9


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def old_losses() -> types.ModuleType:
    """The old losses module, exactly as committed, from git."""
    repo = Path(__file__).resolve().parents[1]
    src = subprocess.run(["git", "show", f"{OLD[0]}:{OLD[1]}"], capture_output=True, text=True, check=True, cwd=repo).stdout
    mod = sys.modules["old_losses"] = types.ModuleType("old_losses")
    exec(compile(src, f"{OLD[0]}:{OLD[1]}", "exec"), mod.__dict__)  # noqa: S102 - our own history
    return mod


def child(impl: str, prompt: int, response: int, bf16: bool, layers: int | None) -> dict:
    import gc

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rlvr_utils.core import losses
    from rlvr_utils.core.hardware import use_threads

    use_threads()
    fn = old_losses().response_logprobs if impl == "before" else losses.response_logprobs
    torch.manual_seed(0)
    shape = {**SHAPE, **({"num_hidden_layers": layers} if layers else {})}
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=151936, tie_word_embeddings=True, **shape))
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    model.train()
    g = torch.Generator().manual_seed(1)
    p, r = torch.randint(0, 151936, (prompt,), generator=g).tolist(), torch.randint(0, 151936, (response,), generator=g).tolist()
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident size
    base = _status("VmRSS")
    t0 = time.perf_counter()
    lp, mask, ent = fn(model, [p], [r], 1.0, bf16, entropy_grad=True)
    n = float(mask.sum())
    loss = -(lp * mask).sum() / n - 0.001 * (ent * mask).sum() / n
    loss.backward()
    seconds = time.perf_counter() - t0
    peak = _status("VmHWM") - base
    grads = sum(q.grad.numel() * q.grad.element_size() for q in model.parameters() if q.grad is not None)
    return {"impl": impl, "precision": "bf16" if bf16 else "fp32", "prompt": prompt, "response": response,
            "layers": shape["num_hidden_layers"], "peak_above_model_gb": round(peak / GB, 2),
            "of_which_gradients_gb": round(grads / GB, 2), "model_gb": round(base / GB, 2), "seconds": round(seconds, 1),
            "loss": float(loss)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--response", type=int, default=3072)
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--layers", type=int, default=None, help="fewer layers than 0.5B's 24 (a quick look)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.prompt, a.response, a.precision == "bf16", a.layers)))
        return
    from rlvr_utils.core.hardware import cpu_info

    rows = []
    for _ in range(a.repeats):
        for impl in ("before", "after"):
            cmd = [sys.executable, __file__, "--child", impl, "--prompt", str(a.prompt), "--response", str(a.response),
                   "--precision", a.precision] + (["--layers", str(a.layers)] if a.layers else [])
            out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
            if out.returncode:
                raise SystemExit(f"{impl}: exit {out.returncode}\n{out.stderr[-3000:]}")
            rows.append({**json.loads(out.stdout.strip().splitlines()[-1]), "cpu": cpu_info()[0]})
            print(json.dumps(rows[-1]), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
