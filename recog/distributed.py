"""Multi-process training on torch.distributed, launched by ``torchrun``: joining the process
group from torchrun's environment, and the few collectives the training loop needs. With no
torchrun environment (``WORLD_SIZE`` unset or 1) every function is a cheap no-op."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


class DistributedError(RuntimeError):
    """The process group could not be joined, or a peer process went away."""


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world() -> World:
    """The world torchrun describes in the environment (a single process without it)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


def current_world() -> World:
    """The world of the initialised process group (a single process if there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def available_device(device: str, key: str) -> torch.device:
    """``device`` as a torch device, or a ConfigError naming ``key`` when this machine has
    no such device (``trainer=gpu`` without a GPU), instead of the driver's traceback."""
    from recog.data.utterance import ConfigError

    try:
        d = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(key, f"{device!r} is not a device ({e})") from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(key, f"{device!r} asks for a GPU, but torch finds none on this "
                          "machine (torch.cuda.is_available() is False): use trainer=cpu")
    if d.type == "cuda" and d.index is not None and d.index >= torch.cuda.device_count():
        raise ConfigError(key, f"{device!r}: this machine has {torch.cuda.device_count()} "
                          "GPU(s), numbered from 0")
    return d


def process_device(device: str, world: World) -> torch.device:
    """``cuda`` means this process's own GPU (``cuda:LOCAL_RANK``) under torchrun."""
    d = available_device(device, "trainer.device")
    if d.type == "cuda" and d.index is None and world.active:
        return torch.device("cuda", world.local_rank)
    return d


def init(device: str, backend: str = "auto", timeout_s: float = 600.0) -> World:
    """Join the process group torchrun set up (gloo on the CPU, NCCL on GPUs for ``auto``).

    A rendezvous that cannot be reached within ``timeout_s`` raises DistributedError naming
    the address, instead of hanging."""
    world = env_world()
    if not world.active or dist.is_initialized():
        return current_world() if world.active else world
    dev = process_device(device, world)
    if backend == "auto":
        backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s),
                                rank=world.rank, world_size=world.size)
    except Exception as e:  # DistStoreError, RuntimeError, ValueError: all mean the same
        raise DistributedError(
            f"rank {world.rank} of {world.size}: could not join the {backend} process group "
            f"at {where} within {timeout_s:g} s ({type(e).__name__}: {e}); check that every "
            "process was started and that MASTER_ADDR/MASTER_PORT are reachable") from e
    return world


def shutdown() -> None:
    """Leave the process group together, rank 0 (which serves the rendezvous store) last:
    a store that vanishes while a peer is still tearing down aborts that peer."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    rank, size = dist.get_rank(), dist.get_world_size()
    store = dist.distributed_c10d._get_default_store()
    clean = sys.exc_info()[0] is None  # after a failure the peers may be gone: do not wait
    if clean:
        try:
            dist.barrier()
        except Exception:  # noqa: BLE001 - leaving anyway
            clean = False
    gc.collect()  # a DDP wrapper left in a reference cycle holds the group until exit
    dist.destroy_process_group()
    if clean and size > 1:
        try:
            if rank:
                store.set(f"recog-left-{rank}", "1")
            else:
                store.wait([f"recog-left-{r}" for r in range(1, size)], timedelta(seconds=30))
        except Exception:  # noqa: BLE001 - leaving anyway
            pass


@contextmanager
def main_first() -> Iterator[None]:
    """Let rank 0 run the block first (e.g. build feature caches), the others after it."""
    world = current_world()
    if world.active and not world.is_main:
        barrier()
    yield
    if world.active and world.is_main:
        barrier()


def _is_peer_failure(e: BaseException) -> bool:
    text = str(e)
    return isinstance(e, dist.DistError) or (isinstance(e, RuntimeError) and any(
        mark in text for mark in ("gloo", "NCCL", "Connection reset", "Connection closed")))


@contextmanager
def peer_failures(what: str) -> Iterator[None]:
    """Re-raise a failed collective inside the block (e.g. DDP's gradient reduction) as a
    DistributedError that says a peer probably died."""
    try:
        yield
    except Exception as e:
        if not current_world().active or isinstance(e, DistributedError) \
                or not _is_peer_failure(e):
            raise
        world = current_world()
        raise DistributedError(
            f"rank {world.rank} of {world.size}: {what} failed ({type(e).__name__}: "
            f"{str(e).strip()}); another training process has probably died or timed out "
            "(see its log)") from e


def _guard(what: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as e:
        world = current_world()
        raise DistributedError(
            f"rank {world.rank} of {world.size}: {what} failed ({type(e).__name__}: {e}); "
            "another training process has probably died or timed out (see its log)") from e


def barrier() -> None:
    if current_world().active:
        _guard("barrier", dist.barrier)


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over the processes (the values themselves when alone)."""
    if not current_world().active:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    _guard("all_reduce", dist.all_reduce, t)
    return t.tolist()


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not current_world().active:
        return obj
    box = [obj]
    _guard("broadcast", dist.broadcast_object_list, box, 0)
    return box[0]


def gather(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order, on every process."""
    world = current_world()
    if not world.active:
        return [obj]
    out: list[Any] = [None] * world.size
    _guard("all_gather", dist.all_gather_object, out, obj)
    return out
