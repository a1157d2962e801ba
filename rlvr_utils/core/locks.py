"""A lock that says when it waits: processes that build one shared thing (a rung, a base evaluation) wait for
whoever builds it, and a user who started the second one sees who that is instead of a silent terminal."""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .files import lock_holder


@contextmanager
def announced_lock(path: Path, what: str, log: Callable[[str], None] = print) -> Iterator[None]:
    """`files.wait_lock`, saying so when another process holds it: "waiting for <what>: held by pid N (<path>)",
    then how long the wait took. Released when the block ends or the process dies."""
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for {what}: held by pid {lock_holder(os.fstat(fh.fileno()).st_ino)} ({path})")
            t0 = time.monotonic()
            fcntl.flock(fh, fcntl.LOCK_EX)
            log(f"{what}: waited {time.monotonic() - t0:.0f} s")
        yield
