"""Ctrl-C and SIGTERM as the kit handles them: one exception, `Interrupted`, that says which signal came.

`install()` (the CLI calls it) makes SIGINT and SIGTERM raise `Interrupted` in the main thread, so a
trainer records its run as interrupted and the CLI ends with one line and 128 + the signal's number
(130, 143), as a shell reports a process its signal ended. A process that runs a notebook kernel must
not raise in the middle of papermill's asyncio loop (its tasks print pages of tracebacks): it wraps the
kernel in `deferred(forward)`, where a signal is recorded and handed on to the kernel instead, and
`Interrupted` is raised once the kernel has stopped. A process pool's worker (`install(raise_=False)`)
only records it: its owner decides what stops.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE = 8.0  # seconds a kernel has to stop on its own (record its run) before it is killed


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, as an exception (a KeyboardInterrupt: code that catches Exception lets it pass)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    def __reduce__(self):  # a pool worker's interrupted cell comes back to its grid pickled
        return type(self), (self.signum,)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def status(self) -> int:
        """The exit status a shell gives a process this signal ended: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


_state = {"caught": 0, "forward": None, "raise": True}
_lock = threading.Lock()


def _handler(signum: int, frame) -> None:
    with _lock:
        first, forward = not _state["caught"], _state["forward"]
        _state["caught"] = _state["caught"] or signum
    if forward is not None:
        if first:  # once: a second signal (Ctrl-C and its forward both reaching a worker) must not interrupt the cleanup
            forward(signum)
        return
    if _state["raise"]:
        raise Interrupted(signum)


def install(raise_: bool = True) -> dict:
    """Handle SIGINT and SIGTERM in this process (from its main thread): raise `Interrupted`, or with
    `raise_=False` only record the signal (`caught`). Returns the handlers it replaced (for `restore`)."""
    _state.update(caught=0, forward=None)
    _state["raise"] = raise_
    return {s: signal.signal(s, _handler) for s in SIGNALS}


def restore(old: dict) -> None:
    """Put back the handlers `install` replaced, and forget the signal caught (a CLI called in a test's process
    leaves it as it was: a later `deferred` must not raise a signal an earlier command already handled)."""
    _state.update({"caught": 0, "forward": None, "raise": True})
    for s, h in old.items():
        signal.signal(s, h)


def caught() -> int:
    """The signal this process has received (0: none)."""
    return _state["caught"]


@contextmanager
def deferred(forward: Callable[[int], None]) -> Iterator[None]:
    """While the block runs, a signal calls `forward(signum)` (once) instead of raising; `Interrupted` is
    raised when the block ends, whatever else it raised. A signal caught before the block raises at once."""
    if caught():
        raise Interrupted(caught())
    _state["forward"] = forward
    try:
        yield
    except Exception:
        if not caught():
            raise
    finally:
        _state["forward"] = None
    if caught():
        raise Interrupted(caught())


@contextmanager
def held() -> Iterator[None]:
    """SIGINT and SIGTERM held back while the block runs, then handed to the handler that was in place (ours, a
    notebook kernel's, the default): a Ctrl-C inside torch.save's writer would come out of it as a RuntimeError,
    as if the disk had failed. The handler is swapped for one that only records, rather than the signal blocked:
    the kernel hands a process's signal to any thread that does not block it (torch's own), and Python then runs
    the handler in the main thread all the same."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if got:
        signal.raise_signal(got[0])  # to this thread: the handler above runs now


def children(pid: int | None = None, cmd: str = "") -> list[int]:
    """The live child processes of `pid` (default this one) whose command line contains `cmd` (Linux's /proc)."""
    pid = pid or os.getpid()
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or parent_of(int(d.name)) != pid:
            continue
        try:
            if cmd in (d / "cmdline").read_bytes().decode(errors="replace"):
                out.append(int(d.name))
        except OSError:
            continue
    return out


def parent_of(pid: int) -> int:
    """The parent's pid of a live process (Linux's /proc); 0 if it has ended."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[1])  # after "(comm)": state, then ppid
    except (OSError, ValueError, IndexError):
        return 0


def stop_children(cmd: str, grace: float = GRACE) -> Callable[[int], None]:
    """A `deferred` forward: SIGINT to this process's children running `cmd` (a notebook kernel then stops its
    run and records it), and SIGKILL to any still alive `grace` seconds later."""
    def forward(signum: int) -> None:
        for p in children(cmd=cmd):
            signal_quietly(p, signal.SIGINT)

        def escalate() -> None:  # looked up again: a kernel that was still starting when the signal came
            for p in children(cmd=cmd):
                signal_quietly(p, signal.SIGKILL)
        t = threading.Timer(grace, escalate)
        t.daemon = True
        t.start()
    return forward


def signal_quietly(pid: int, sig: int) -> None:
    """os.kill, for a process that may have ended meanwhile."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop_resource_tracker() -> None:
    """Stop multiprocessing's resource tracker once no child of ours is left to use it. Starting a spawned worker
    starts it, and it ignores SIGTERM: a notebook kernel's shutdown (ipykernel) sends its children SIGTERM and
    waits for them, and jupyter_client, after 2.5 s, terminates the kernel itself; every grid cell paid those
    2.5 s (docs/performance.md). The next spawned worker starts it again."""
    import multiprocessing

    if multiprocessing.active_children():
        return
    from multiprocessing import resource_tracker

    stop = getattr(resource_tracker._resource_tracker, "_stop", None)  # CPython's own shutdown path (3.11-3.13)
    if stop is not None:
        try:
            stop()
        except Exception:  # noqa: BLE001 - a tracker that cannot stop costs that wait, nothing more
            pass
