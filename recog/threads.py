"""How many threads torch computes with on the CPU. torch's default (one per core) makes
training on a busy or small machine many times slower (measured on a shared 2-core machine:
7-20x, OpenMP threads spin-waiting for cores they do not get), so the default here is half
of the cores this process may use, shared among the processes started on this machine."""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger("recog")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def choose_threads(requested: int = 0) -> int:
    """``requested`` threads, or for 0: half the available cores divided among this
    machine's processes (torchrun's LOCAL_WORLD_SIZE), at least 1 and at most 8."""
    if requested < 0:
        raise ValueError(f"trainer.num_threads must be >= 0, not {requested}")
    if requested:
        return requested
    local = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    return max(1, min(8, available_cores() // (2 * local)))


def set_threads(requested: int = 0) -> int:
    """Set torch's intra-op thread count (see ``choose_threads``), log it and return it."""
    n = choose_threads(requested)
    torch.set_num_threads(n)
    how = "as set" if requested else (f"auto: half of {available_cores()} available cores"
                                      " per local process")
    log.info("torch threads: %d (trainer.num_threads=%d, %s)", n, requested, how)
    return n
