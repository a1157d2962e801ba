"""Where the policy runs and in which precision: decided from the machine, once, and recorded.

Precision matters for speed more than anything else on a CPU, and the right answer differs by
machine: bf16 matmuls are 3-4x faster than fp32 on a CPU with avx512_bf16/AMX and ~4x slower on one
without (emulated). `precision="auto"` therefore measures a short matmul in both and keeps the faster,
caching the verdict per machine (CPU model, flags, torch version) so every run and test on it agrees.
On CUDA it is bf16 where the card supports it. The resolved choice goes into each run's config.json.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import matmul
from .files import atomic_write_json, cache_dir
from .prompts import context_length

# The static engine's chunks (sampler.StaticEngine), here because the memory plan sizes them too:
ROWS = 1024  # sequences per chunk at most; fewer where their KV cache would pass CACHE_BYTES
CACHE_BYTES = 2**30  # (1024 rows of the 7m rung at 64 new tokens in fp32: 256 rows sampled 12% slower)

PRECISIONS = ("auto", "fp32", "bf16")
REF_PRECISIONS = ("fp32", "bf16")  # a frozen reference copy's weights
_DTYPE = {"fp32": "float32", "bf16": "bfloat16"}


@dataclass(frozen=True)
class Hardware:
    device: str       # cpu | cuda | cuda:N
    precision: str    # fp32 | bf16 (resolved)
    name: str         # CPU model or GPU name
    bf16_native: bool  # avx512_bf16 / AMX on a CPU; bf16 support on a GPU
    reason: str       # why this precision: measured GFLOP/s, the card, or "forced"

    @property
    def dtype(self) -> str:
        """The torch dtype name of the precision: float32 | bfloat16."""
        return dtype_name(self.precision)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.device} ({self.name}), {self.precision}: {self.reason}"


def dtype_name(precision: str) -> str:
    """fp32 -> float32, bf16 -> bfloat16 (a resolved precision only)."""
    if precision not in _DTYPE:
        raise ValueError(f"precision={precision!r} is not resolved; known: {', '.join(_DTYPE)}")
    return _DTYPE[precision]


def resolve_device(device: str = "auto", log=print) -> str:
    """`auto`: CUDA when torch can use it, else the CPU (saying so when this torch was built for CUDA). An
    explicit `cuda` never falls back: a GPU profile on a machine whose GPU torch cannot use stops here."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.version.cuda:
            log(f"warning: torch {torch.__version__} is built for CUDA {torch.version.cuda} but sees no usable GPU; "
                "running on the CPU (`rlvr env check --cuda` says why)")
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but torch {torch.__version__} sees no usable CUDA device ("
                         + (f"built for CUDA {torch.version.cuda}: no GPU, or a driver too old for it"
                            if torch.version.cuda else "a CPU-only build") + "); `rlvr env check --cuda` says which, "
                         "or --set device=cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device={device!r} not in auto, cpu, cuda (or cuda:N)")
    return device


def cpu_info() -> tuple[str, set[str]]:
    """(model name, flags) from /proc/cpuinfo; empty where it does not exist."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "model name" and val.strip():
                name = val.strip()
            elif key.strip() == "flags":
                flags = set(val.split())
            if flags and name:
                break
    except OSError:
        pass
    return name, flags


def bf16_native(flags: set[str]) -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def matmul_gflops(dtype: str, n: int = 512, seconds: float = 0.3) -> float:
    """Sustained GFLOP/s of a [n, n] x [n, 2n] linear layer in `dtype` on the CPU (after a warm-up).

    `F.linear` in `matmul.linears()`, not `@`: it is what the trainer runs, and on some CPUs the ways take
    different kernels (fp32 through oneDNN, not MKL).
    """
    x = torch.randn(n, n).to(getattr(torch, dtype))
    w = torch.randn(2 * n, n).to(getattr(torch, dtype))
    with torch.no_grad(), matmul.linears():
        torch.nn.functional.linear(x, w)
        reps, t0 = 0, time.perf_counter()
        while (dt := time.perf_counter() - t0) < seconds:
            torch.nn.functional.linear(x, w)
            reps += 1
    return 4 * n**3 * reps / dt / 1e9


THREADS_ENV = "RLVR_THREADS"  # a grid executor's allocation for the cell it starts (cores; 0 = all)


def cpu_cores() -> list[int]:
    """The ids of the cores this process may run on (its affinity mask)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def vllm_bind(cores: list[int]) -> str:
    """vLLM's CPU thread binding for these cores: one thread pinned per core."""
    return ",".join(map(str, cores))


def cell_threads() -> int:
    """The cores this process may use: its executor's allocation, else every core in its affinity mask."""
    cores = len(cpu_cores())
    given = int(os.environ.get(THREADS_ENV) or 0)
    return min(given, cores) if given > 0 else cores


def use_threads(n: int | None = None) -> int:
    """Make torch's and vLLM's CPU threads follow the allocation (`n`, else `cell_threads()`).

    Must run before vLLM starts: its CPU worker freezes `torch.set_num_threads`. With the whole
    affinity mask vLLM pins one thread per core, as it does by default. With a share of the machine
    (a Ray cell beside another) nothing is pinned: the share is a count, not a set of cores, and two
    cells pinned to the same cores would each run at a fraction of their speed.
    """
    cores = cpu_cores()
    n = n or cell_threads()
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = vllm_bind(cores) if n >= len(cores) else "nobind"
    return n


def _cache_file() -> Path:
    return cache_dir() / "hardware.json"


def measure_cpu_precision() -> tuple[str, str]:
    """(fp32 | bf16, reason): the faster of the two at a matmul, cached per CPU and torch version.

    fp32 and bf16 are measured interleaved, twice each, because this machine's speed drifts.
    """
    name, flags = cpu_info()
    key = (f"{name}|{'bf16' if bf16_native(flags) else 'no-bf16'}|avx512={'avx512f' in flags}|torch {torch.__version__}"
           + ("|onednn fp32" if matmul.onednn() else ""))  # measured as the trainer runs its products
    cache = _cache_file()
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]["precision"], known[key]["reason"]
    runs = {"float32": [], "bfloat16": []}
    for _ in range(2):
        for dt in runs:
            runs[dt].append(matmul_gflops(dt))
    f32, b16 = max(runs["float32"]), max(runs["bfloat16"])
    # bf16 must win clearly: it also costs accuracy, and casts eat part of a small gain
    precision = "bf16" if b16 > 1.2 * f32 else "fp32"
    reason = f"measured matmul fp32 {f32:.0f} vs bf16 {b16:.0f} GFLOP/s (avx512_bf16/AMX: {bf16_native(flags)})"
    known[key] = {"precision": precision, "reason": reason}
    atomic_write_json(cache, known)
    return precision, reason


def resolve(device: str = "auto", precision: str = "auto") -> Hardware:
    """The concrete device and precision for a run (`auto` decided as the module docstring says)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} not in {', '.join(PRECISIONS)}")
    dev = resolve_device(device)
    if dev.startswith("cuda"):
        name = torch.cuda.get_device_name(dev)
        # is_bf16_supported() counts emulation (V100, T4), which vLLM refuses: compute capability 8 (Ampere) and up
        native = torch.cuda.get_device_capability(dev) >= (8, 0)
        if precision == "auto":
            return Hardware(dev, "bf16" if native else "fp32", name, native, "CUDA: bf16 where the card supports it")
        return Hardware(dev, precision, name, native, "forced")
    name, flags = cpu_info()
    if precision == "auto":
        chosen, reason = measure_cpu_precision()
        return Hardware(dev, chosen, name, bf16_native(flags), reason)
    return Hardware(dev, precision, name, bf16_native(flags), "forced")


# ------------------------------------------------------------------------------------ memory plan

GB = 1e9


def _shape(mc) -> tuple[int, int, int, int, int, int, int]:
    """(hidden, layers, MLP width, vocabulary, heads, KV heads, head dim) of a decoder's HF config."""
    heads = mc.num_attention_heads
    return (mc.hidden_size, mc.num_hidden_layers, mc.intermediate_size, mc.vocab_size, heads,
            getattr(mc, "num_key_value_heads", None) or heads, getattr(mc, "head_dim", None) or mc.hidden_size // heads)


def param_count(mc) -> int:
    """Parameters of a decoder-only transformer from its HF config (Llama/Qwen2 shapes: GQA, SwiGLU)."""
    H, L, F, V, heads, kv, hd = _shape(mc)
    bias = (heads + 2 * kv) * hd if getattr(mc, "attention_bias", mc.model_type == "qwen2") else 0
    per_layer = H * heads * hd + 2 * H * kv * hd + heads * hd * H + bias + 3 * H * F + 2 * H
    head = 0 if getattr(mc, "tie_word_embeddings", False) else V * H
    return V * H + head + L * per_layer + H


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes a run needs at its two peaks (rollout, update) against what the device has."""

    params: int
    parts: dict  # name -> bytes
    rollout_peak: float
    update_peak: float
    available: float
    device: str

    @property
    def peak(self) -> float:
        return max(self.rollout_peak, self.update_peak)

    @property
    def fits(self) -> bool:
        return self.peak <= 0.95 * self.available  # allocator fragmentation and the CUDA context

    def __str__(self) -> str:
        rows = [f"memory plan ({self.params / 1e9:.2f}B parameters, {self.device}, {self.available / GB:.1f} GB):"]
        rows += [f"  {k:40s} {v / GB:8.2f} GB" for k, v in self.parts.items()]
        rows += [f"  {'peak while sampling':40s} {self.rollout_peak / GB:8.2f} GB",
                 f"  {'peak while updating':40s} {self.update_peak / GB:8.2f} GB  "
                 f"({'fits' if self.fits else 'DOES NOT FIT'})"]
        return "\n".join(rows)


VLLM_GRAPH_TOKENS = 512  # vLLM 0.32's largest CUDA-graph capture size by default (max_cudagraph_capture_size)
VLLM_RUNNER_BUFFERS = 0.5 * GB  # its runner's buffers outside the sleep pool (inputs, block tables, sampler): estimated
LOGIT_CHUNK = 3 * 2 * 256  # fp32 [rows, V] transients of the loss's chunked log-softmax: 3 at most of < 2 x LOGIT_ROWS


def vllm_asleep_bytes(mc) -> float:
    """What vLLM 0.32 keeps on the card while asleep at level 2 (its source: `CuMemAllocator.sleep` unmaps every
    allocation made in its pool, weights and KV cache discarded, runtime state and workspaces backed up to the host;
    the CUDA-graph pool is torch's own, outside that pool, unless `sleep_mode_offload_cudagraph`): the graphs' pool,
    about one forward of the largest captured batch (fp32 logits and one layer's activations, bf16), and the
    runner's buffers. An estimate: the GPU smoke measures it (free memory while asleep)."""
    H, F, V = mc.hidden_size, mc.intermediate_size, mc.vocab_size
    return VLLM_GRAPH_TOKENS * (4 * V + 2 * (10 * H + 4 * F)) + VLLM_RUNNER_BUFFERS


def micro_tokens(cfg) -> tuple[int, int, str]:
    """(padded tokens, response tokens, a description) of the largest micro-batch `cfg` can form."""
    seq = cfg.max_prompt_tokens + max(cfg.max_tokens, cfg.eval_max_tokens)
    if cfg.micro_batch_tokens:  # up to the budget, and never less than one whole sample (a longer one goes alone)
        tokens = max(cfg.micro_batch_tokens, seq)
        return tokens, tokens, f"micro-batch <= {tokens} tokens"
    return cfg.micro_batch_size * seq, cfg.micro_batch_size * cfg.max_tokens, f"micro-batch {cfg.micro_batch_size} x {seq}"


def micro_words(cfg) -> str:
    """The largest micro-batch in words: its samples at full length, and the budget that shorter ones share."""
    seq = cfg.max_prompt_tokens + max(cfg.max_tokens, cfg.eval_max_tokens)
    if cfg.micro_batch_tokens:
        return f"{max(1, cfg.micro_batch_tokens // seq)} full-length samples ({cfg.micro_batch_tokens} tokens; more if shorter)"
    return f"{cfg.micro_batch_size} samples"


def memory_plan(mc, cfg, hw: Hardware, available: float | None = None, engine: str | None = None) -> MemoryPlan:
    """Estimate, before any weights load, what `cfg` needs on `hw` for a model of HF config `mc`.

    fp32 master weights (4 B/param), fp32 grads (4), AdamW moments (8), a frozen reference when kl_coef > 0 or
    track_kl (4, or 2 with ref_precision=bf16); the engine: vLLM's share of the card (gpu_memory_utilization;
    released while training when it sleeps, all but `vllm_asleep_bytes`) or the HF engine's bf16 copy (2) plus
    its KV cache; the largest micro-batch (`micro_tokens`): per token and layer ~(10 H + 4 F) values (F: the MLP
    width) in the compute precision (H with activation checkpointing, plus one layer's recomputed), and the
    head's [response tokens, V] output in the compute precision (the loss's only vocabulary-sized tensor: its
    gradient is written into it) with the loss's fp32 chunk transients; on a GPU, torch's foreach AdamW also
    holds a parameter-sized fp32 temporary during its step, after the micro-batches.
    Measured on an H200 and an H100 against Qwen2.5-3B at the `paper` profile's full length (bench/measured/), with
    the loss path before this one: within 2% (tests/core/test_hardware.py holds its other parts to those rows).
    """
    cfg = cfg.fit_context(context_length(mc))  # idempotent: a prompt budget of 0 is the model's own
    P = param_count(mc)
    H, L, F, V, heads, kv, hd = _shape(mc)
    act_bytes = 2 if hw.precision == "bf16" else 4
    seq = cfg.max_prompt_tokens + max(cfg.max_tokens, cfg.eval_max_tokens)
    tokens, response, micro_name = micro_tokens(cfg)
    full = (10 * H + 4 * F) * act_bytes  # a token's activations in one layer
    parts = {"weights (fp32 master)": 4 * P, "gradients (fp32)": 4 * P, "AdamW moments (fp32)": 8 * P}
    ref_key = f"reference policy ({cfg.ref_precision})"
    if cfg.kl_coef > 0 or cfg.track_kl:
        parts[ref_key] = (2 if cfg.ref_precision == "bf16" else 4) * P
    parts[f"activations, {micro_name}"] = tokens * (L * H * act_bytes + full if cfg.gradient_checkpointing else L * full)
    parts["logits at response positions"] = response * V * act_bytes + LOGIT_CHUNK * V * 4
    cuda = hw.device.startswith("cuda")
    if cuda:
        parts["AdamW step temporaries (fp32)"] = 4 * P
    if available is None:
        available = _device_bytes(hw.device)
    engine = engine or cfg.engine  # the engine as resolved on this machine (engines.resolve_engine)
    if engine not in ("vllm", "hf", "static"):
        raise ValueError(f"memory_plan needs the resolved engine (vllm | hf | static), got {engine!r}")
    engine_vllm = engine == "vllm"
    sleeping = engine_vllm and cuda and cfg.vllm_sleep
    if engine_vllm and cuda:
        parts[f"vLLM share ({cfg.vllm_gpu_memory:.2f} of the card)"] = cfg.vllm_gpu_memory * available
    elif engine == "static":  # its fused weight copy and one chunk's KV cache (sampler.StaticEngine.sample)
        per_row = L * 2 * kv * hd * max(cfg.max_tokens, cfg.eval_max_tokens) * act_bytes
        parts["static engine weights and KV cache"] = act_bytes * P + per_row * max(1, min(ROWS, CACHE_BYTES // per_row))
    elif not engine_vllm:
        batch = min(cfg.hf_batch_size, cfg.prompts_per_step * cfg.rollouts_per_prompt)  # HFEngine's batch size
        if hw.precision == "bf16":
            parts["HF engine bf16 copy"] = 2 * P
        parts[f"HF engine KV cache ({batch} x {seq})"] = batch * seq * L * 2 * kv * hd * act_bytes
    engine_bytes = sum(v for k, v in parts.items() if k.startswith(("vLLM", "HF engine", "static engine")))
    if sleeping:
        parts["vLLM asleep (CUDA graphs, buffers)"] = vllm_asleep_bytes(mc)
    resident = parts["weights (fp32 master)"] + parts["AdamW moments (fp32)"] + parts.get(ref_key, 0)
    micro = parts[f"activations, {micro_name}"] + parts["logits at response positions"]
    update = resident + parts["gradients (fp32)"] + max(micro, parts.get("AdamW step temporaries (fp32)", 0)) \
        + (parts["vLLM asleep (CUDA graphs, buffers)"] if sleeping else engine_bytes)
    return MemoryPlan(P, parts, resident + engine_bytes, update, available, hw.device)


def _device_bytes(device: str) -> float:
    if device.startswith("cuda"):
        return float(torch.cuda.get_device_properties(device).total_memory)
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def cuda_memory(device: str, phase: str) -> dict:
    """GB allocated, reserved and free on a CUDA device, keyed by `phase` (a step's metrics); {} on a CPU."""
    if not device.startswith("cuda"):
        return {}
    free, _ = torch.cuda.mem_get_info(device)
    return {f"mem_{phase}_allocated_gb": round(torch.cuda.memory_allocated(device) / GB, 2),
            f"mem_{phase}_reserved_gb": round(torch.cuda.memory_reserved(device) / GB, 2),
            f"mem_{phase}_free_gb": round(free / GB, 2)}


def check_plan(plan: MemoryPlan) -> None:
    """Refuse a run that cannot fit, naming what to change."""
    if plan.fits:
        return
    raise MemoryError(
        f"{plan}\nthe run needs ~{plan.peak / GB:.1f} GB but {plan.device} has {plan.available / GB:.1f} GB. "
        "Change one of: micro_batch_size or micro_batch_tokens (activations), gradient_checkpointing=true, vllm_sleep=true "
        "(the engine releases its share while the policy trains), a lower vllm_gpu_memory, ref_precision=bf16 or "
        "kl_coef=0 and track_kl=false (the reference copy), max_tokens, or a smaller model / larger card.")
