"""One writer per experiment folder: an exclusive ``fcntl.flock`` on ``<exp_dir>/.lock``.

The kernel drops the lock when its holder exits, however it exits (SIGKILL included), so a
stale lock never blocks a later run. The file holds the holder's pid and verb, for the
error message of a second run. Taking the lock again inside the same process nests."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

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
    f = open(path, "a+")  # noqa: SIM115 - kept open while the lock is held
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
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}, {what}\n")
        f.flush()
        _HELD[path] = [f, 1]
        yield
    finally:
        _HELD.pop(path, None)
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        f.close()
