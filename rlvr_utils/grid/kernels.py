"""Notebook kernels forked from a warm process, so a grid's cells do not each import torch and transformers anew.

A cell's kernel spent ~5 s of a family cell's ~30 importing what every training notebook imports (a Zen 5,
docs/performance.md). A zygote (`python -m rlvr_utils.grid.kernels ipykernel_launcher`), started by the grid
process with the kernels' environment and working folder, imports it once and then only forks. It never runs a
torch operation, so no OpenMP pool exists to be forked: it checks that its imports started no thread beyond those
of the libraries in `FORK_SAFE`, which stop and restart their own around a fork, and left CUDA uninitialised.

jupyter_client asks `ForkProvisioner` for each kernel. The zygote forks twice and the middle process exits, so
the kernel is re-parented to the grid process (a child subreaper for that moment): the kernel is the grid's child,
as one Popen starts, so the grid's lock on the run folder, a trainer's `exit_with_parent`, ipykernel's parent
poller and the grid's Ctrl-C forwarding (`interrupts.stop_children("ipykernel")`: the kernel keeps the zygote's
command line) hold unchanged. Anything the zygote cannot serve (another kernel command, a zygote that died or did
not start) is launched as jupyter_client launches it. RLVR_FORK_KERNELS=0 turns forking off.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from ..core import interrupts

FORK_ENV = "RLVR_FORK_KERNELS"
LAUNCHER = "ipykernel_launcher"
# Started first: their thread pools (OpenBLAS's, under numpy and scipy; jemalloc's, under pyarrow) are stopped
# before a fork and restarted after it by their own pthread_atfork handlers. Any thread started after them fails
# the check in `serve`.
FORK_SAFE = ["numpy", "scipy.linalg", "pyarrow"]
# What the training notebook and its trainer import, the costly part first (transformers' Llama classes ~4 s).
WARM = ["torch", "transformers", "transformers.models.llama.modeling_llama", "ipykernel.kernelapp",
        "rlvr_utils.train.loop", "rlvr_utils.grid.profiles", "rlvr_utils.study.frames", "rlvr_utils.study.figures"]
# Set by jupyter_client for each kernel; every other variable must equal the zygote's (imports read them).
PER_KERNEL = {"JPY_PARENT_PID", "JPY_SESSION_NAME", "PYTHONEXECUTABLE"}
READY_TIMEOUT = 300.0  # seconds for a zygote's imports (a cold disk, a busy machine)
_PR_SET_CHILD_SUBREAPER, _PR_GET_CHILD_SUBREAPER = 36, 37


def enabled() -> bool:
    return sys.platform == "linux" and os.environ.get(FORK_ENV, "1") != "0"


def _key(env: Mapping[str, str]) -> tuple:
    return tuple(sorted((k, v) for k, v in env.items() if k not in PER_KERNEL))


class Zygote:
    """A warm process that forks kernels; its requests come on its stdin, its answers on a pipe of their own (its
    stdout and stderr are the grid's, which the kernels it forks write to, as a Popen'd kernel does)."""

    def __init__(self, python: str, env: Mapping[str, str], cwd: str):
        read, write = os.pipe()
        self.proc = subprocess.Popen([python, "-m", __name__, LAUNCHER, str(write)], stdin=subprocess.PIPE,
                                     env=dict(env), cwd=cwd, pass_fds=(write,))
        os.close(write)
        self._answers = os.fdopen(read, "r")
        self._ready: bool | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None and self._ready is not False

    def fork(self, argv: list[str], env: Mapping[str, str], cwd: str) -> int | None:
        """The pid of a kernel running `argv` (a child of this process), or None where the zygote cannot serve."""
        if self._ready is None:
            line = _readline(self._answers, READY_TIMEOUT)
            self._ready = line.startswith("ready")
            if not self._ready:
                print(f"rlvr: kernels start unforked (zygote: {line.strip() or 'exited'})", file=sys.stderr)
        if not self.alive():
            return None
        with _subreaper():
            try:
                self.proc.stdin.write((json.dumps({"argv": argv, "env": dict(env), "cwd": cwd}) + "\n").encode())
                self.proc.stdin.flush()
                answer = json.loads(_readline(self._answers, 60.0) or "{}")
            except (OSError, ValueError):
                answer = {}
        if not answer:  # a late answer would be taken for the next kernel's: this zygote serves no more
            self._ready = False
            return None
        pid = answer.get("pid")
        return pid if pid and interrupts.parent_of(pid) == os.getpid() else None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._answers.close()
        if self.proc.stdin:
            self.proc.stdin.close()


def _readline(f, timeout: float) -> str:
    import select

    return f.readline() if select.select([f], [], [], timeout)[0] else ""


_zygotes: dict[tuple, Zygote] = {}
_lock = threading.Lock()


def zygote(python: str, env: Mapping[str, str], cwd: str) -> Zygote:
    """The zygote for kernels of this interpreter, environment and folder; another one's is closed (a grid's
    kernels share all three, so one lives at a time)."""
    key = (python, cwd, _key(env))
    with _lock:
        z = _zygotes.get(key)
        if z is not None and z.alive():
            return z
        for old in _zygotes.values():
            old.close()
        _zygotes.clear()
        z = _zygotes[key] = Zygote(python, env, cwd)
        return z


def prestart(env: Mapping[str, str], cwd: str | Path) -> None:
    """Start the zygote the next kernel with this environment and folder will use, so that its imports run while
    this process does other work (a grid resolving its rungs)."""
    if enabled():
        zygote(sys.executable, env, str(cwd))


@atexit.register
def close_all() -> None:
    with _lock:
        for z in _zygotes.values():
            z.close()
        _zygotes.clear()


class _subreaper:
    """This process adopts orphaned descendants while the block runs: the kernel, once its zygote's middle process
    exits. Only for that moment: any other orphan adopted would stay a zombie here."""

    def __enter__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        was = ctypes.c_int(0)
        self.libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(was))
        self.was = was.value
        self.libc.prctl(_PR_SET_CHILD_SUBREAPER, 1)

    def __exit__(self, *exc):
        self.libc.prctl(_PR_SET_CHILD_SUBREAPER, self.was)


class Forked:
    """The handle LocalProvisioner keeps of its kernel's process (a Popen), for a kernel this process adopted."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        while self.poll() is None:
            time.sleep(0.01)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


@functools.cache
def provisioner_class():
    from jupyter_client.provisioning import LocalProvisioner

    class ForkProvisioner(LocalProvisioner):
        """LocalProvisioner, its kernel forked from the zygote where it can be."""

        async def launch_kernel(self, cmd: list[str], **kwargs: Any):
            env, cwd = dict(kwargs.get("env") or os.environ), str(kwargs.get("cwd") or os.getcwd())
            pid = None
            if enabled() and cmd[1:3] == ["-m", LAUNCHER]:
                env["JPY_PARENT_PID"] = str(os.getpid())  # as jupyter_client's launcher sets it
                pid = zygote(cmd[0], env, cwd).fork(cmd, env, cwd)
            if pid is None:
                return await super().launch_kernel(cmd, **kwargs)
            self.process, self.pid, self.pgid, self.cwd = Forked(pid), pid, pid, cwd
            return self.connection_info

    return ForkProvisioner


@functools.cache
def manager_class():
    """A kernel manager (nbclient's `kernel_manager_class`, which papermill passes on) whose kernels are forked."""
    import uuid

    from jupyter_client.manager import AsyncKernelManager

    class ForkedKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:
            if self.provisioner is None:  # jupyter_client keeps a provisioner it finds (as on a restart)
                self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
                self.provisioner = provisioner_class()(kernel_id=self.kernel_id, kernel_spec=self.kernel_spec,
                                                       parent=self)
            await super().start_kernel(**kw)

    return ForkedKernelManager


# --- the zygote's side ---------------------------------------------------------------------------------------

def serve(answer_fd: int) -> None:
    """Import, then fork a kernel for each request line on stdin until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the grid's to hand on; the grid ends us
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # as ipykernel sets it
    answers = os.fdopen(answer_fd, "w")
    why = _warm_up()
    answers.write(f"failed: {why}\n" if why else "ready\n")
    answers.flush()
    if why:
        return
    parent = os.getppid()
    for line in sys.stdin.buffer:
        request = json.loads(line)
        answers.write(json.dumps({"pid": _fork_kernel(request, parent, answer_fd)}) + "\n")
        answers.flush()


def _warm_up() -> str:
    """Import what the kernels need; why the zygote cannot serve them, or "" where it can."""
    try:
        for name in FORK_SAFE:
            if importlib.util.find_spec(name.split(".")[0]):
                importlib.import_module(name)
        safe = _threads()
        for name in WARM:
            importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - the grid launches its kernels itself
        return f"{type(e).__name__}: {e}"
    if _threads() != safe:  # a pool that does not survive a fork (torch's OpenMP one) started
        return f"{_threads() - safe} thread(s) started by the imports"
    if _cuda_poisoned():
        return "the imports initialised CUDA, which a forked process cannot use"
    return ""


def _cuda_poisoned() -> bool:
    """Whether a child forked now could not use CUDA: torch marks its forks so once CUDA was initialised."""
    pid = os.fork()
    if pid == 0:
        os._exit(int(bool(sys.modules["torch"].cuda._is_in_bad_fork())))
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _fork_kernel(request: dict, parent: int, answer_fd: int) -> int:
    read, write = os.pipe()
    middle = os.fork()
    if middle == 0:  # exits at once, so that its child is adopted by `parent`
        try:
            os.close(read)
            kernel = os.fork()
            if kernel == 0:
                os.close(write)
                _become_kernel(request, parent, answer_fd)
            os.write(write, str(kernel).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        pid = int(f.read() or 0)
    os.waitpid(middle, 0)
    return pid


def _become_kernel(request: dict, parent: int, answer_fd: int) -> None:
    code = 1
    try:
        os.setsid()  # as jupyter_client starts a kernel: its own session, so an interrupt reaches its group
        deadline = time.monotonic() + 10
        while os.getppid() != parent and time.monotonic() < deadline:
            time.sleep(0.001)
        if os.getppid() != parent:
            os._exit(70)  # not adopted: the grid could not wait for it or signal it as its child
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.close(answer_fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the zygote ignored it
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _reseed()
        sys.argv = [importlib.import_module(LAUNCHER).__file__, *request["argv"][3:]]
        from ipykernel.kernelapp import IPKernelApp

        IPKernelApp.launch_instance()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - a kernel's failure is its own, never the zygote's
        import traceback

        traceback.print_exc()
    finally:
        # what interpreter shutdown does that matters (atexit: multiprocessing ends its daemonic children, logging
        # flushes; files left open flushed), without the module teardown: an unforked training kernel spent ~1 s there
        import atexit

        atexit._run_exitfuncs()
        _flush_open_files()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _flush_open_files() -> None:
    """Flush the files a notebook left open, whose buffered tail module teardown would have written."""
    import gc
    import io

    kinds = (io.TextIOWrapper, io.BufferedWriter, io.BufferedRandom)  # exact types: an ABC check is 5x slower
    for f in gc.get_objects():
        if type(f) in kinds:
            try:
                if not f.closed:
                    f.flush()
            except Exception:  # noqa: BLE001 - a broken file is the notebook's; the others still flush
                pass


def _reseed() -> None:
    """Fresh seeds, as a fresh process has: every fork would otherwise draw the zygote's random streams."""
    import random

    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()


if __name__ == "__main__":
    serve(int(sys.argv[2]))
