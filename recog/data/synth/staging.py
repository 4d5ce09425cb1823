"""Atomic corpus builds: write into a temporary folder beside the target, rename at the end;
and the pool of fresh processes the eSpeak builds synthesise in."""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield an empty folder that becomes ``target`` when the block ends without error, so an
    interrupted build never leaves a partial corpus; on error the folder is removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the corpus is not
    try:
        yield staging
        try:
            os.rename(staging, target)
        except OSError:
            if not target.exists():
                raise
            shutil.rmtree(staging, ignore_errors=True)  # another build finished first
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def fresh_pool(workers: int, preload: str) -> Iterator[multiprocessing.pool.Pool]:
    """A pool whose workers are fresh processes, each running one task (forked from a clean
    server that has imported ``preload``, where the platform has one): eSpeak keeps waveform
    state between utterances, so this makes a build byte-identical whatever the number of
    workers. Workers leave Ctrl-C (sent to the whole process group) to the parent, and every
    worker is gone, interrupted or not, before the pool's semaphores are (a worker still
    starting would otherwise print a traceback)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([preload])
    else:
        ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(workers, _ignore_sigint, maxtasksperchild=1)
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
