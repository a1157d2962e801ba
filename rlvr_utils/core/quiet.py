"""Third-party log noise (vLLM's weight-loading warnings, Triton and NUMA notices, Python warnings) into a file, so
a notebook's output is the run's own lines plus one saying where the rest went."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


@contextmanager
def third_party_log(path: str | Path, say: Callable[[str], None] = print) -> Iterator[Path]:
    """Within the block, the process's stderr descriptor (native libraries' output; child processes inherit it),
    warnings, the root logger and every other logger's stream handlers write to `path` (appended); one line says so.

    `sys.stderr` itself is left alone: a kernel flushes it between messages, and a library that saves and restores
    it around our block would leave it pointing at a closed file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a", buffering=1, encoding="utf-8", errors="replace")
    except OSError:  # a folder the run itself will refuse, with its own clear message: leave that to it
        yield path
        return
    say(f"third-party log messages (vLLM, transformers, torch, warnings) go to {path}")
    sys.stdout.flush()
    sys.stderr.flush()
    with f:
        saved_fd = os.dup(2)
        root = logging.StreamHandler(f)
        root.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        # handlers whose stream can be set (logging's last-resort handler reads sys.stderr each time: not one of them)
        streams = [(h, h.stream) for name in list(logging.Logger.manager.loggerDict) if not name.startswith("rlvr_utils")
                   for h in getattr(logging.getLogger(name), "handlers", []) if type(h) is logging.StreamHandler]
        old_env = os.environ.get("VLLM_CONFIGURE_LOGGING")
        os.environ["VLLM_CONFIGURE_LOGGING"] = "0"  # a vLLM imported inside: its loggers reach stderr, i.e. the file
        try:
            os.dup2(f.fileno(), 2)
            for h, _ in streams:
                h.setStream(f)
            logging.getLogger().addHandler(root)  # loggers without handlers of their own (vLLM's, unconfigured) land here
            with warnings.catch_warnings():
                warnings.showwarning = lambda msg, cat, fn, ln, file=None, line=None: f.write(  # noqa: ARG005
                    warnings.formatwarning(msg, cat, fn, ln, line))
                yield path
        finally:
            f.flush()
            logging.getLogger().removeHandler(root)
            for h, s in streams:
                h.setStream(s)
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            if old_env is None:
                os.environ.pop("VLLM_CONFIGURE_LOGGING", None)
            else:
                os.environ["VLLM_CONFIGURE_LOGGING"] = old_env
