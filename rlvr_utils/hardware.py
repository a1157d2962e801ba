"""Where the policy runs and in which precision: decided from the machine, once, and recorded.

Precision matters for speed more than anything else on a CPU, and the right answer differs by
machine: bf16 matmuls are 3-4x faster than fp32 on a CPU with avx512_bf16/AMX and ~4x slower on one
without (emulated). `precision="auto"` therefore measures a short matmul in both and keeps the faster,
caching the verdict per machine (CPU model, flags, torch version) so every run and test on it agrees.
On CUDA it is bf16 where the card supports it. The resolved choice goes into each run's config.json.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
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
        return _DTYPE[self.precision]

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.device} ({self.name}), {self.precision}: {self.reason}"


def dtype_name(precision: str) -> str:
    """fp32 -> float32, bf16 -> bfloat16 (a resolved precision only)."""
    if precision not in _DTYPE:
        raise ValueError(f"precision={precision!r} is not resolved; known: {', '.join(_DTYPE)}")
    return _DTYPE[precision]


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but torch sees no CUDA device")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device={device!r} not in {', '.join(DEVICES)} (or cuda:N)")
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

    `F.linear`, not `@`: it is what the models run, and on some CPUs the two take different kernels.
    """
    import torch

    x = torch.randn(n, n).to(getattr(torch, dtype))
    w = torch.randn(2 * n, n).to(getattr(torch, dtype))
    torch.nn.functional.linear(x, w)
    reps, t0 = 0, time.perf_counter()
    while (dt := time.perf_counter() - t0) < seconds:
        torch.nn.functional.linear(x, w)
        reps += 1
    return 4 * n**3 * reps / dt / 1e9


def _cache_file() -> Path:
    from .models import cache_dir

    return cache_dir() / "hardware.json"


def measure_cpu_precision() -> tuple[str, str]:
    """(fp32 | bf16, reason): the faster of the two at a matmul, cached per CPU and torch version.

    fp32 and bf16 are measured interleaved, twice each, because this machine's speed drifts.
    """
    import torch

    name, flags = cpu_info()
    key = f"{name}|{'bf16' if bf16_native(flags) else 'no-bf16'}|avx512={'avx512f' in flags}|torch {torch.__version__}"
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
    from .runs import atomic_write_json

    atomic_write_json(cache, known)
    return precision, reason


def resolve(device: str = "auto", precision: str = "auto") -> Hardware:
    """The concrete device and precision for a run (`auto` decided as the module docstring says)."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} not in {', '.join(PRECISIONS)}")
    dev = resolve_device(device)
    if dev.startswith("cuda"):
        name = torch.cuda.get_device_name(dev)
        native = torch.cuda.is_bf16_supported()
        if precision == "auto":
            return Hardware(dev, "bf16" if native else "fp32", name, native, "CUDA: bf16 where the card supports it")
        return Hardware(dev, precision, name, native, "forced")
    name, flags = cpu_info()
    if precision == "auto":
        chosen, reason = measure_cpu_precision()
        return Hardware(dev, chosen, name, bf16_native(flags), reason)
    return Hardware(dev, precision, name, bf16_native(flags), "forced")
