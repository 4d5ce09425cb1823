"""Atomic file writes: a temporary file beside the target, fsync, rename, fsync of the
folder. A crash, a kill or a full disk leaves the old file (or none), never half a file."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO

_TMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_name(path: Path) -> Path:
    """The temporary name this process writes ``path`` under: ``.<name>.<pid>.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files in ``folder`` left by writers that no longer run (a killed
    build); return them. Files of a live process are left alone."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        m = _TMP.fullmatch(tmp.name)
        if m is None or _alive(int(m["pid"])):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftover from an earlier, failed attempt
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path`` under, for writers that take a path; on a clean
    exit it is fsynced and replaces ``path`` durably, on any error (ENOSPC included) it is
    deleted and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            why = ("the file grew past the process's file-size limit" if e.errno == errno.EFBIG
                   else "no space left on the device")
            raise OSError(e.errno, f"{why} while writing it; the previous version of the "
                          "file, if any, is intact", str(path)) from e
        if isinstance(e, RuntimeError) and "inline_container" in str(e):  # torch's writer
            full = shutil.disk_usage(path.parent).free < 1 << 24
            why = "no space left on the device" if full else "the write failed"
            raise OSError(errno.ENOSPC if full else errno.EIO, f"{why} while writing it; the "
                          "previous version of the file, if any, is intact", str(path)) from e
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file for writing; on a clean exit it replaces ``path`` durably, on
    any error (ENOSPC included) it is deleted and ``path`` is left as it was."""
    with atomic_path(path) as tmp, open(tmp, mode, **({} if "b" in mode else
                                                     {"encoding": "utf-8"})) as f:
        yield f


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically, so readers never see half of it."""
    with atomic_open(path, "w") as f:
        f.write(text)
