"""The console verbs' one error boundary: every failure becomes one line on stderr,
``error: FILE[:LINE]: what is wrong`` with what to do, and exit status 2 (a stop by signal:
128 + the signal). Tracebacks only with ``RECOG_DEBUG=1`` in the environment or ``--debug``
on the command line."""

from __future__ import annotations

import errno
import functools
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

_HINTS = {  # what to do about an OS error, by errno
    errno.ENOSPC: "no space left on the device: free some and run again (a file being "
                  "written keeps its previous version)",
    errno.EDQUOT: "disk quota exceeded: free some space and run again",
    errno.EACCES: "permission denied: check the file's and its folder's permissions",
    errno.EPERM: "operation not permitted: check the file's and its folder's permissions",
    errno.ENOENT: "no such file or folder: check the path",
    errno.ELOOP: "too many levels of symbolic links (a symlink loop, or a link where none "
                 "is allowed): replace the link with the file it should name",
    errno.EISDIR: "is a folder, a file was expected",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EROFS: "the file system is read-only: choose another output folder",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.EIO: "input/output error: the disk or the file system failed",
}


def debugging() -> bool:
    """Tracebacks were asked for (``RECOG_DEBUG`` set to anything but empty or 0)."""
    return os.environ.get("RECOG_DEBUG", "") not in ("", "0")


def _loaded(*names: str) -> tuple[type, ...]:
    """The classes ``module.Class`` of modules already imported. An exception of a class
    whose module was never loaded cannot be at hand, and importing while describing a
    failure is unsafe: a Ctrl-C that interrupted ``import torch`` left it half-imported, and
    importing it again crashed the interpreter (SIGSEGV)."""
    found = []
    for name in names:
        module, cls = name.rsplit(".", 1)
        if hasattr(sys.modules.get(module), cls):
            found.append(getattr(sys.modules[module], cls))
    return tuple(found)


def describe(e: BaseException) -> tuple[str, int]:
    """The one line (without ``error: ``) and the exit status for a failure."""
    if isinstance(e, _loaded("recog.train.options.Interrupted")):
        return str(e), 128 + e.signum  # type: ignore[attr-defined]
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (SIGINT); files being written keep their previous version", 130
    if isinstance(e, OSError) and e.filename is not None:
        what = _HINTS.get(e.errno or 0, e.strerror or str(e))
        if e.strerror and "previous version" in e.strerror:  # recog.atomic's own words
            what = e.strerror
        return f"{e.filename}: {what}", 2
    if isinstance(e, OSError) and e.errno in _HINTS and not e.filename:
        return f"{e.strerror or e}: {_HINTS[e.errno]}", 2
    if isinstance(e, MemoryError) and not str(e):
        return "out of memory: the input is too large for this machine", 2
    if isinstance(e, RecursionError):
        return f"{_where(e)}: input nested too deeply ({e})", 2
    if _ours(e):
        return str(e), 2
    return (f"{_where(e)}: internal error, {type(e).__name__}: {_one_line(e)}; run again "
            "with RECOG_DEBUG=1 (or --debug) for the traceback, and report it"), 2


def _ours(e: BaseException) -> bool:
    """An error recog raised on purpose, whose message already names the file and the fix."""
    ours = _loaded("recog.data.utterance.DataError", "recog.lockfile.LockedError",
                   "recog.train.options.Diverged", "recog.train.options.BatchTooLarge",
                   "recog.distributed.DistributedError")
    return isinstance(e, (ValueError, *ours)) and bool(str(e))


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else "(no message)"


def _where(e: BaseException) -> str:
    """The innermost recog source line the failure passed through (FILE:LINE)."""
    root = Path(__file__).resolve().parent
    where = "recog"
    for frame in traceback.extract_tb(e.__traceback__):
        if Path(frame.filename).resolve().is_relative_to(root):
            where = f"{frame.filename}:{frame.lineno}"
    return where


def guarded(fn: F) -> F:
    """Run a console verb inside the error boundary (``--debug`` is taken off argv)."""

    @functools.wraps(fn)
    def run(*args: object, **kwargs: object) -> object:
        if "--debug" in sys.argv[1:]:
            sys.argv.remove("--debug")
            os.environ["RECOG_DEBUG"] = "1"
        if args and isinstance(args[0], list) and "--debug" in args[0]:
            args = ([a for a in args[0] if a != "--debug"], *args[1:])
            os.environ["RECOG_DEBUG"] = "1"
        try:
            return fn(*args, **kwargs)
        except SystemExit:
            raise
        except BaseException as e:
            if debugging():
                raise
            message, status = describe(e)
            print(f"error: {message}", file=sys.stderr)
            sys.exit(status)

    return run  # type: ignore[return-value]
