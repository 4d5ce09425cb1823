"""One writer per experiment folder: an exclusive ``fcntl.flock`` on ``<exp_dir>/.lock``.

The kernel drops the lock when its holder exits, however it exits (SIGKILL included), so a
stale lock never blocks a later run. The file holds the holder's pid and verb, for the
error message of a second run. Taking the lock again inside the same process nests.

The file is opened without following a symbolic link (``O_NOFOLLOW``) and must be a regular
file, so a link planted at ``.lock`` cannot make a run truncate the file it points to."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from recog.data.utterance import DataError

_HELD: dict[Path, list] = {}  # lock path -> [open file, depth], for nesting in one process


class LockedError(RuntimeError):
    """Another run holds the experiment folder."""


@contextlib.contextmanager
def exp_lock(exp_dir: str | Path, what: str = "run") -> Iterator[None]:
    """Hold ``exp_dir`` for this process while the block runs; fail at once, naming the
    folder and the holder's pid, when another process holds it."""
    folder = Path(exp_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    if path in _HELD:
        _HELD[path][1] += 1
        try:
            yield
        finally:
            _HELD[path][1] -= 1
        return
    f = _open_lock_file(path)
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown pid"
        f.close()
        raise LockedError(f"{folder}: another run is writing this experiment folder "
                          f"({holder}); wait for it, stop it, or choose another exp_dir"
                          ) from None
    try:
        try:
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()}, {what}\n")
            f.flush()
        except OSError as e:
            raise DataError(path, f"cannot write the experiment lock: {e.strerror}") from None
        _HELD[path] = [f, 1]
        yield
    finally:
        _HELD.pop(path, None)
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        f.close()


def _open_lock_file(path: Path) -> IO[str]:
    """``path`` opened for reading and writing, created if absent, never through a link."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DataError(path, "the experiment lock is a symbolic link; recog will not "
                            "write through it: remove it") from None
        raise DataError(path, f"cannot open the experiment lock: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DataError(path, "the experiment lock is not a regular file: remove it")
    return os.fdopen(fd, "r+", encoding="utf-8")
