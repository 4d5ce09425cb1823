"""Where a training run stands: epochs done, steps taken, the position within an unfinished
epoch, the best dev error rate, the per-epoch history and every process's random generators,
with the payload form ``last.pt`` keeps them in."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from recog.distributed import all_sum


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (the streams the loop draws from)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every random generator the loop draws from (dropout, weight noise, shuffles), as
    tensors and plain values (what a ``weights_only`` checkpoint can hold)."""
    kind, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state = {"python": random.getstate(),
             "numpy": {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)),
                       "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` captured (a torch-only state from an older recog too)."""
    if "python" in state:
        random.setstate(state["python"])
        n = state["numpy"]
        np.random.set_state((n["kind"], n["key"].numpy().astype(np.uint32), n["pos"],
                             n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


@dataclass
class EpochStats:
    """Running sums of one epoch (over every process once summed)."""

    loss: float = 0.0
    utts: float = 0.0
    frames: float = 0.0
    padded: float = 0.0
    skipped: int = 0
    grad_norm: float = 0.0
    seconds: float = 0.0

    def summed(self, device: torch.device) -> EpochStats:
        """Totals over the processes (skips and norms are the same on every process)."""
        loss, utts, frames, padded = all_sum([self.loss, self.utts, self.frames, self.padded],
                                             device)
        return EpochStats(loss, utts, frames, padded, self.skipped, self.grad_norm,
                          self.seconds)

    def add(self, step: EpochStats) -> None:
        """Add one applied step's loss, utterances and frames."""
        self.loss += step.loss
        self.utts += step.utts
        self.frames += step.frames
        self.padded += step.padded

    @classmethod
    def resumed(cls, saved: dict, is_main: bool) -> EpochStats:
        """The sums a mid-epoch ``last.pt`` recorded: the summed ones on the main process
        (added once), only the per-process-equal skips, norms and time elsewhere."""
        if is_main:
            return cls(**saved)
        return cls(skipped=saved["skipped"], grad_norm=saved["grad_norm"],
                   seconds=saved["seconds"])


@dataclass
class TrainState:
    """A run's position. ``epoch`` counts finished epochs; ``position`` (``{"epoch", "step",
    "stats"}``) marks a stop inside the next one; ``rng`` is one state per process."""

    epoch: int = 0
    global_step: int = 0
    position: dict | None = None
    best: float = math.inf
    history: list[dict] = field(default_factory=list)
    rng: list[dict] = field(default_factory=list)

    def to_payload(self) -> dict:
        """The entries ``last.pt`` holds (as recog has always written them)."""
        return {"epoch": self.epoch, "best": self.best, "history": self.history,
                "rng": self.rng, "position": self.position, "global_step": self.global_step}

    @classmethod
    def from_payload(cls, payload: dict) -> TrainState:
        """Read ``to_payload``'s entries back (older files: one RNG state, no step count)."""
        rngs = payload["rng"] if isinstance(payload["rng"], list) else [payload["rng"]]
        return cls(epoch=payload["epoch"], global_step=payload.get("global_step", 0),
                   position=payload.get("position"), best=payload["best"],
                   history=payload["history"], rng=rngs)

    def restore_rng(self, rank: int, seed: int) -> None:
        """Continue this process's random streams; a process the writing run did not have
        gets fresh ones (seeded by rank and step, so no two processes share one)."""
        if rank < len(self.rng):
            set_rng_state(self.rng[rank])
        else:
            seed_everything(seed + 7919 * rank + self.global_step)
