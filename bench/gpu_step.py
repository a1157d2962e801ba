"""Two RL steps of the original study's batch on one GPU, through the real trainer: where time and memory go.

Qwen2.5-0.5B/1.5B/3B-shaped models with random weights (published shapes, no download) and a byte-level
tokenizer built here (the hub's is not reachable); generated problems (`gen:chain`), so no data travels.
Each model trains 2 steps of 32 prompts x 2 samples x 512 tokens (forced full length: random weights
rarely stop) with W-REINFORCE (every sample is trained) and the HF engine on the same device. Printed per
model: per-phase seconds, generated and trained tokens/s, the update's model FLOP utilisation, peak GPU
memory, and the memory plan's prediction beside it.

`--profile seed|paper` instead trains with that grid profile's own settings (micro-batches, activation
checkpointing, the paper's mini-batches and 3072-token responses) on fewer prompts (`--prompts`), to check its
memory plan on a real card; the HF engine still samples (the device has no vLLM), so vLLM sleep is off.

GPU:       python bench/gpu_step.py                    (bench/gpu_check.sh installs math-verify first)
           python bench/gpu_step.py --profile paper --prompts 16 --steps 1 --models qwen2.5-3b
CPU smoke: python bench/gpu_step.py --device cpu --tiny [--profile paper]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from gpu_rollouts import SHAPES  # published Qwen2.5-*-Instruct shapes (bench/ is on the path of a bench script)

from rlvr_utils.core.config import TrainConfig
from rlvr_utils.grid.profiles import PROFILES
from rlvr_utils.core.hardware import memory_plan
from rlvr_utils.core.hardware import resolve as resolve_hardware
from rlvr_utils.core.models import load_tokenizer
from rlvr_utils.core.prompts import render
from rlvr_utils.core.runs import RunDir
from rlvr_utils.train.loop import train

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16 tensor-core peaks


def update_flops(n_params: int, head_params: int, prompt_tokens: int, response_tokens: int, forwards: int = 0) -> float:
    """Model FLOPs of one update (MFU's numerator): 6 x params x tokens for forward + backward, the
    vocabulary head at response positions only, plus 2 x params x tokens for each extra forward-only pass
    (old log-probs, a reference policy). Activation checkpointing's recompute is not model work."""
    body = (n_params - head_params) * (prompt_tokens + response_tokens) + head_params * response_tokens
    return (6 + 2 * forwards) * body


def mfu(flops: float, seconds: float, card: str) -> float | None:
    """Model FLOP utilisation against the card's dense bf16 peak; None for a card not in PEAK_TFLOPS."""
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in card), None)
    return round(flops / seconds / (peak * 1e12), 3) if peak else None


def print_table(rows: list[dict]) -> None:
    """The rows as one markdown table, for the README."""
    print("\n| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
    for r in rows:
        print("| " + " | ".join(str(v) for v in r.values()) + " |")


def byte_tokenizer():
    """A byte-level tokenizer with a chat template: enough for prompts and decoding, no download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens(specials)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    return tok


def build_model(name: str, out: Path, tiny: bool, device: str) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tiny_shape = dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=2,
                      num_key_value_heads=1)
    shape = {**SHAPES[name], **(tiny_shape if tiny else {})}
    tok = byte_tokenizer()
    # Qwen's 152k vocabulary (the logits' memory is the point on a card); the byte tokenizer's own on the CPU dry run
    cfg = Qwen2Config(vocab_size=len(tok) if tiny else 151936, max_position_embeddings=32768, rope_theta=1e6,
                      tie_word_embeddings=True,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **shape)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    del model
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="2 layers and a small batch: a CPU smoke test")
    ap.add_argument("--models", default=",".join(SHAPES))
    ap.add_argument("--out", default=None, help="also write the rows as JSON here")
    ap.add_argument("--profile", default=None, choices=[None, *PROFILES], help="train with this profile's settings")
    ap.add_argument("--prompts", type=int, default=None, help="prompts per step (default: the batch's own)")
    ap.add_argument("--steps", type=int, default=2)
    a = ap.parse_args()
    cuda = a.device.startswith("cuda")
    batch = dict(prompts_per_step=2, rollouts_per_prompt=2, max_tokens=8) if a.tiny else \
        dict(prompts_per_step=32, rollouts_per_prompt=2, max_tokens=512)
    settings = dict(micro_batch_size=8, lr=1e-6, max_model_len=2048)
    if a.profile:
        p = PROFILES[a.profile].params
        batch = dict(prompts_per_step=2 if a.tiny else p["prompts_per_step"], rollouts_per_prompt=p["rollouts_per_prompt"],
                     max_tokens=8 if a.tiny else p["max_tokens"])
        keep = ("micro_batch_size", "mini_batch_size", "gradient_checkpointing", "lr", "max_model_len", "clip_eps",
                "loss_agg", "loss_norm", "scale_logits", "entropy_coef", "weight_decay", "max_grad_norm",
                "adam_beta2", "max_prompt_tokens", "temperature")
        settings = {k: p[k] for k in keep if k in p}
        if a.tiny and "mini_batch_size" in settings:
            settings["mini_batch_size"] = 4  # several mini-batches of the tiny batch, as the full one has
    if a.prompts:
        batch["prompts_per_step"] = a.prompts
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            t_build = time.perf_counter()
            path = build_model(name, Path(tmp) / name, a.tiny, a.device)
            print(f"[{name}] built and saved in {time.perf_counter() - t_build:.1f} s", flush=True)
            cfg = TrainConfig(model=str(path), data="gen:chain?difficulty=3&n=400", objective="w_reinforce",
                              steps=a.steps, **batch, min_tokens=batch["max_tokens"], engine="hf", device=a.device,
                              eval_problems=0, checkpoint_every=0, grade_workers=2, **settings)
            hw = resolve_hardware(cfg.device, cfg.precision)
            from transformers import AutoConfig

            plan = memory_plan(AutoConfig.from_pretrained(path), cfg, hw)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            run = train(cfg, Path(tmp) / f"run-{name}",
                        log=lambda m, name=name, t0=t0: print(f"[{name} +{time.perf_counter() - t0:.0f} s] {m}", flush=True))
            wall = time.perf_counter() - t0
            peak = torch.cuda.max_memory_allocated() / 1e9 if cuda else None
            ms = RunDir(run.path).read_metrics()
            m = ms[-1]  # the last step: warm when there are two
            gen_tokens = m["samples"] * m["response_len_mean"]
            tok = load_tokenizer(str(path))
            recs = [json.loads(x) for x in (run.path / "samples" / f"step_{a.steps:05d}.jsonl").read_text().splitlines()]
            prompt_tokens = sum(len(render(tok, r["problem"], cfg.prompt)) for r in recs)
            n_params = plan.params
            mc = AutoConfig.from_pretrained(path)
            flops = update_flops(n_params, mc.vocab_size * mc.hidden_size, prompt_tokens, m["tokens_trained"],
                                 forwards=int(m["optimizer_steps"] > 1))
            card = torch.cuda.get_device_name(a.device) if cuda else hw.name
            row = {"model": name, "profile": a.profile or "seed batch", "device": card, "precision": hw.precision,
                   "params_b": round(n_params / 1e9, 3),
                   "generate_s": round(m["time_generate"], 2), "grade_s": round(m["time_grade"], 2),
                   "train_s": round(m["time_train"], 2), "sync_s": round(m["time_sync"], 2),
                   "gen_tokens_s": round(gen_tokens / m["time_generate"], 1),
                   "train_tokens_s": round(m["tokens_trained"] / m["time_train"], 1),
                   "update_mfu": mfu(flops, m["time_train"], card),
                   "peak_gb": round(peak, 2) if peak is not None else None,
                   "plan_update_peak_gb": round(plan.update_peak / 1e9, 4), "steps": a.steps, "wall_s": round(wall, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if a.out:  # after each model: a run cut off by its time limit keeps the models done
                Path(a.out).write_text(json.dumps(rows, indent=2))
            if cuda:
                torch.cuda.empty_cache()
    print_table(rows)


if __name__ == "__main__":
    main()
