"""A write that fails (a full disk, a file-size limit, a read-only folder) ends in one line naming the file.

Python's OS errors of a write name no file (a temporary file's at most), and torch.save's writer raises a
RuntimeError from its C++ stream with neither errno nor path. `naming` and `checkpoint_error` turn both into
an OSError whose message is the file and what to do; `rewrite_in_place` is the last resort of a run whose
full disk refuses even the new file an atomic write needs.
"""

from __future__ import annotations

import errno
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def check_folder_link(path: Path) -> None:
    """Refuse a folder path that is a symbolic link to nothing: creating it would fail with a bare "File exists"."""
    if path.is_symlink() and not path.exists():
        raise FileNotFoundError(f"{path}: a symbolic link to {os.readlink(path)}, which does not exist; create that "
                                "folder, or remove the link to start the run here")


def _error(kind: type[OSError], code: int | None, message: str) -> OSError:
    err = kind(message)  # no "[Errno N]" before it: the message carries strerror
    err.errno = code
    return err


@contextmanager
def naming(path: Path, fix: str = "") -> Iterator[None]:
    """Raise an OS error of the block's write to `path` as one naming `path`, then `fix` (what to do)."""
    try:
        yield
    except OSError as e:
        if e.filename and Path(e.filename).name == path.name:
            raise
        raise _error(type(e), e.errno, f"{e.strerror or e} while writing {path}{fix}") from None


def checkpoint_error(e: BaseException, file: Path, kept: Path) -> OSError | None:
    """The error to raise for a failed checkpoint write to `file` (the previous checkpoint stays in `kept`); None
    where `e` is not a failed write (re-raise it as it is)."""
    if isinstance(e, RuntimeError) and not any(w in str(e) for w in ("inline_container", "file write failed",
                                                                       "PytorchStreamWriter")):
        return None
    if not isinstance(e, (OSError, RuntimeError)):
        return None
    code = getattr(e, "errno", None) or _full(file.parent.parent)
    why = os.strerror(code) if code else f"the write failed ({str(e).splitlines()[0][:200]})"
    return _error(OSError, code, f"{why} while writing the checkpoint {file}; the previous one is kept in {kept}")


def _full(folder: Path) -> int:
    """ENOSPC where the folder's disk is (nearly) full, else 0: why a write torch reports without an errno failed."""
    try:
        st = os.statvfs(folder)
        return errno.ENOSPC if st.f_bavail * st.f_frsize < 1 << 20 else 0
    except OSError:
        return 0


def rewrite_in_place(path: Path, data: bytes) -> bool:
    """Overwrite `path` with `data` in its own blocks (not atomic), where `data` is no longer than the file: a full
    disk has no block for an atomic write's new file. For a file that is only a record of state (a damaged one says
    to delete it). False where it could not."""
    try:
        if len(data) > os.path.getsize(path):
            return False
        with open(path, "r+b") as f:
            f.write(data)
            f.truncate()
            f.flush()
            os.fsync(f.fileno())
        return True
    except OSError:
        return False


def rewrite_state_in_place(path: Path, state: str, error: str) -> None:
    """A status file's state rewritten in its own blocks, where a full disk refused its atomic write: the whole
    record with the new state, else only the state and a shortened error (whichever fits the old file)."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - unreadable: nothing to keep of it
        old = {}
    for new in ({**old, "state": state, "error": error}, {"state": state, "error": error[:200]}):
        if rewrite_in_place(path, (json.dumps(new, indent=2, ensure_ascii=False) + "\n").encode()):
            return
