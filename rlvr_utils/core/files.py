"""The kit's files: where they live, how they are written, and the one reader of them.

Every whole-file write is atomic (a temp file in the same folder, fsync, rename): a killed process
leaves the old file or the new one, never half of one. JSONL files are append-only journals: each
append is whole lines in one `write`, flushed to disk, so a crash can leave at most a torn last line,
which `read_jsonl` detects and `repair_jsonl` cuts off. Everything the kit reads back goes through
`read_json` / `read_jsonl`, which name the file, the line and what to do when it is damaged.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator


class DamagedFile(Exception):
    """A file the kit wrote cannot be read back. The message names the file, the line and a remedy. Not a
    ValueError: code that treats a missing record as "no data" must not take damage for it."""


class TornTail(DamagedFile):
    """A JSONL journal whose last line is incomplete: what a crash during an append leaves."""

    def __init__(self, path: Path, line: int, fix: str):
        self.path, self.line = path, line
        super().__init__(f"{path}:{line}: torn last line (a crash during an append); {fix}")


def cache_dir() -> Path:
    """The package's cache (converted models, rungs, hardware verdicts): $RLVR_CACHE, else ~/.cache/rlvr_utils."""
    return Path(os.environ.get("RLVR_CACHE", Path.home() / ".cache" / "rlvr_utils"))


# ------------------------------------------------------------------------------------------- writes

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


@contextmanager
def atomic_dir(path: str | Path, partial: str | Path | None = None) -> Iterator[Path]:
    """A folder built whole or not at all: yields an empty folder (`partial`, default `<path>.partial`) to build in,
    and on a clean exit puts it at `path` by one rename, replacing what was there. A killed build leaves `path` as
    it was; its partial folder is cleared by the next build."""
    path = Path(path)
    tmp = Path(partial) if partial else path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def emit(text: str, out: str | Path | None) -> int:
    """A generated page (a summary, a table): written atomically to `out` where given, and printed. Exit status 0."""
    if out:
        atomic_write_text(out, text)
    print(text, end="")
    return 0


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def jsonl_text(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)


def append_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Append whole lines in one write, on disk before returning: a crash tears at most the last line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(jsonl_text(rows))
        f.flush()
        os.fsync(f.fileno())


# -------------------------------------------------------------------------------------------- reads

def read_json(path: str | Path, fix: str = "") -> Any:
    """A JSON file the kit wrote; a damaged one raises DamagedFile naming it, the line and `fix`."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DamagedFile(f"{path}:{e.lineno}: not valid JSON ({e.msg}; {len(text)} bytes)"
                          + (f"; {fix}" if fix else "")) from None


def read_jsonl(path: str | Path, fix: str = "", torn: str = "raise") -> list[dict]:
    """The rows of a JSONL journal (none if it does not exist). A line that does not parse is damage,
    named with its line number; a last line without its newline is a torn tail (`TornTail`):
    `torn="raise"` raises it, `torn="skip"` leaves it out (readers that report it themselves)."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")  # the last element is "" when the file ends with a newline
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        last = n == len(lines)
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if last:
                if torn == "skip":
                    break
                raise TornTail(path, n, fix) from None
            raise DamagedFile(f"{path}:{n}: not valid JSON ({e.msg})" + (f"; {fix}" if fix else "")) from None
        if last:  # parses, but its newline never made it: the append did not finish
            if torn == "skip":
                break
            raise TornTail(path, n, fix)
        rows.append(row)
    return rows


def torn_tail(path: str | Path) -> int | None:
    """The line number of a JSONL file's torn last line, or None when it ends cleanly (or does not exist)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return None
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return None
    return path.read_bytes().count(b"\n") + 1


def repair_jsonl(path: str | Path) -> int | None:
    """Cut a torn last line off a journal (atomically: the good prefix is rewritten whole). Returns the
    line number cut, or None when there was nothing to cut. Lines before it are never touched."""
    path = Path(path)
    line = torn_tail(path)
    if line is None:
        return None
    data = path.read_bytes()
    atomic_write_bytes(path, data[: data.rfind(b"\n") + 1])
    return line


MAX_LINE_BYTES = 1 << 20  # a user's data line longer than this is refused: a problem or completion is ~1-10 kB


class BadLine(ValueError):
    """A line of a user's data file that cannot be read as text; the message names the file and line."""


def read_lines(path: str | Path, max_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line of a user's data file (`train`'s problems, `grade`'s completions), the one
    reader of them: UTF-8 strictly (a bad byte raises BadLine naming file:line, never a silent replacement), a line
    over `max_bytes` refused at once with its number (read no further than that), CRLF read as LF, NUL bytes kept
    (the parser of each line judges its content)."""
    path = Path(path)
    with path.open("rb") as f:
        for n, raw in enumerate(iter(lambda: f.readline(max_bytes + 1), b""), 1):
            if len(raw) > max_bytes and not raw.endswith(b"\n"):
                raise BadLine(f"{path}:{n}: line longer than {max_bytes / 2**20:g} MB (one record a line; "
                              "is this the right file?)")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise BadLine(f"{path}:{n}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                              "save the file as UTF-8") from None
            yield n, text[:-2] + "\n" if text.endswith("\r\n") else text


def iter_json_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a user's JSONL file (`read_lines`), blank lines skipped (its parser names its own
    errors)."""
    for n, line in read_lines(path):
        if line.strip():
            yield n, line


# ---------------------------------------------------------------------------------------- crash tests

CRASH_ENV = "RLVR_CRASH_AT"  # tests only: "<point>:<step>" makes the process SIGKILL itself there


def append_torn(path: Path, row: dict) -> None:
    """Half of a row's line, on disk: what a crash in the middle of `append_jsonl` can leave (tests only)."""
    line = jsonl_text([row])
    with path.open("a", encoding="utf-8") as f:
        f.write(line[: len(line) // 2])
        f.flush()
        os.fsync(f.fileno())


def crash_point(point: str, step: int, torn_write=None) -> None:
    """A test hook: when $RLVR_CRASH_AT names this point and step (`point:step`, or `point:step:INT` for the
    signal Ctrl-C sends), signal this process here: SIGKILL after `torn_write()`, which leaves half a write
    behind as a crash mid-append does. A no-op otherwise."""
    sig = {f"{point}:{step}": signal.SIGKILL, f"{point}:{step}:INT": signal.SIGINT}.get(os.environ.get(CRASH_ENV, ""))
    if sig == signal.SIGKILL and torn_write is not None:
        torn_write()
    if sig is not None:
        os.kill(os.getpid(), sig)


# -------------------------------------------------------------------------------------------- locks

@contextmanager
def wait_lock(path: Path, what: str = "", log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on the file `path`, waiting for any holder: processes that start together
    (a Ray grid's cells) build a shared thing once. With `log`, a wait is said ("waiting for <what>: held by
    pid N (<path>)", then how long it took), so the second of two builds is not a silent terminal. Released
    when the block ends or the process dies."""
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if log is not None:
                log(f"waiting for {what or path.name}: held by pid {lock_holder(os.fstat(fh.fileno()).st_ino)} ({path})")
            t0 = time.monotonic()
            fcntl.flock(fh, fcntl.LOCK_EX)
            if log is not None:
                log(f"{what or path.name}: waited {time.monotonic() - t0:.0f} s")
        yield


class FolderBusy(RuntimeError):
    """A run folder is being written by another live process."""


def try_lock(folder: Path) -> int:
    """Claim `folder` for this process (an flock on the empty file `.lock` inside it) until the returned
    descriptor is closed or the process dies. Raises FolderBusy naming the holder's pid."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = lock_holder(os.fstat(fd).st_ino)
        os.close(fd)
        raise FolderBusy(f"{folder} is being written by another process (pid {holder}); "
                         "stop it or wait for it, then run again") from None
    return fd


def lock_holder(inode: int) -> str:
    """The pid holding an flock on the file with this inode (Linux's /proc/locks), or "?"."""
    try:
        for line in Path("/proc/locks").read_text().splitlines():
            f = line.split()
            if len(f) >= 6 and f[1] == "FLOCK" and f[5].rsplit(":", 1)[-1] == str(inode):
                return f[4]
    except OSError:
        pass
    return "?"
