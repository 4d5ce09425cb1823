"""One optimiser step: the CTC loss, micro-batch accumulation (DDP gradients synchronised on
the last one only), stand-in shares, weight noise, clipping, out-of-memory translation and
the checks that stop a run which blows up before a checkpoint holds the damage."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from recog.batching import Batch, CTCDataset
from recog.distributed import World, all_sum
from recog.train.options import BatchTooLarge, Diverged, OptimOptions, TrainerOptions
from recog.train.state import EpochStats

LossFn = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
Augment = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
BLOW_UP = 10  # a loss this many times a uniform output's (log V nats per frame): blown up


def make_optimizer(model: torch.nn.Module, opts: OptimOptions, params: Iterable | None = None
                   ) -> torch.optim.Optimizer:
    """The configured optimiser over ``params`` (parameters or param groups; default: all)."""
    params = model.parameters() if params is None else params
    if not 0 < opts.lr < torch.finfo(torch.float32).max:
        raise ValueError(f"optim.lr={opts.lr}: the learning rate must be a positive number "
                         "that float32 holds (1e-3 is usual for Adam)")
    for key, value, ok in (("momentum", opts.momentum, 0 <= opts.momentum < 1),
                           ("weight_decay", opts.weight_decay, opts.weight_decay >= 0),
                           ("weight_noise", opts.weight_noise, opts.weight_noise >= 0),
                           ("grad_clip", opts.grad_clip, opts.grad_clip >= 0)):
        if not ok:  # a negative clip norm would turn every step uphill
            raise ValueError(f"optim.{key}={value}: momentum lies in [0, 1), the others are "
                             ">= 0 (grad_clip 0: no clipping)")
    if opts.name == "adam":
        return torch.optim.Adam(params, lr=opts.lr, weight_decay=opts.weight_decay)
    if opts.name == "sgd":
        return torch.optim.SGD(params, lr=opts.lr, momentum=opts.momentum,
                               weight_decay=opts.weight_decay)
    raise ValueError(f"unknown optim.name {opts.name!r} (adam or sgd)")


def ctc_loss(model: torch.nn.Module, batch: Batch, device: torch.device,
             precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed CTC loss of a batch, with the log-probs and output lengths it came from.

    With ``precision="bf16"`` the model runs under autocast and the loss in float32. Lengths
    stay on the CPU (packing needs them there), everything else is copied without blocking.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown trainer.precision {precision!r}; known: {sorted(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    feats = batch.feats.to(device, non_blocking=True)
    targets = batch.targets.to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        log_probs, out_lens = model(feats, batch.lengths)
    log_probs = log_probs.float()
    loss = F.ctc_loss(log_probs.transpose(0, 1), targets, out_lens, batch.target_lengths,
                      blank=0, reduction="sum", zero_infinity=False)
    return loss, log_probs, out_lens


def check_blow_up(exp_dir: Path, epoch: int, step: int, which: str, per_frame: float,
                  vocab_size: int) -> None:
    """Stop when an epoch's finite loss per frame is ``BLOW_UP`` times what a uniform
    output distribution scores: no model that learns anything gets there."""
    chance = math.log(vocab_size)
    if per_frame > BLOW_UP * chance:
        raise Diverged(exp_dir, epoch, step, f"the {which} loss is {per_frame:.3g} per frame, "
                       f"over {BLOW_UP} times that of a uniform output ({chance:.3g})")


def _finite_weights(model: torch.nn.Module) -> bool:
    """Every parameter is finite (one reduction per tensor, no copy to the host per tensor)."""
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and ("out of memory" in str(e)
                                         or "can't allocate memory" in str(e)))


def _oom_message(batch: Batch, dataset: CTCDataset, device: torch.device, opts: TrainerOptions
                 ) -> str:
    """Which utterances (longest first) made a step run out of memory, and what to try."""
    order = sorted(range(len(batch.indices)), key=lambda r: -int(batch.lengths[r]))
    utts = ", ".join(f"{dataset.ids[batch.indices[r]]} ({int(batch.lengths[r])} frames)"
                     for r in order[:10])
    more = f" and {len(order) - 10} more" if len(order) > 10 else ""
    return (f"out of memory on {device} in a training step of {len(order)} utterance(s) "
            f"padded to {batch.feats.shape[1]} frames: {utts}{more}; lower "
            f"trainer.batch_frames (now {opts.batch_frames}), raise trainer.accumulate "
            f"(now {opts.accumulate}), or leave out utterances this long")


class _WeightNoise:
    """Adds Gaussian noise to the weights for one forward/backward pass, then removes it."""

    def __init__(self, model: torch.nn.Module, std: float):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.std, self.saved = std, []

    def __enter__(self) -> None:
        if self.std > 0:
            with torch.no_grad():
                self.saved = [p.detach().clone() for p in self.params]
                for p in self.params:
                    p.add_(torch.randn_like(p) * self.std)

    def __exit__(self, *exc: object) -> None:
        if self.saved:
            with torch.no_grad():
                for p, s in zip(self.params, self.saved, strict=True):
                    p.copy_(s)
            self.saved = []


@dataclass
class Stepper:
    """Takes a fit's optimiser steps one at a time and counts the bad ones in a row.
    ``net`` is what runs the batches (the DDP wrapper under torchrun), ``model`` the
    network whose weights are clipped, noised and checked."""

    net: torch.nn.Module
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    optim: OptimOptions
    opts: TrainerOptions
    world: World
    device: torch.device
    train_set: CTCDataset
    vocab_size: int
    exp_dir: Path
    loss: LossFn = ctc_loss
    augment: Augment | None = None
    bad_in_a_row: int = 0
    noise: _WeightNoise = field(init=False)

    def __post_init__(self) -> None:
        self.noise = _WeightNoise(self.model, self.optim.weight_noise)

    def step(self, loader: Iterator[Batch], real: Sequence[bool], n_utts: int, stopping: bool,
             epoch: int, number: int, stats: EpochStats
             ) -> tuple[bool, EpochStats | None, float]:
        """Step ``number`` of ``epoch`` over this process's micro-batches (``real[a]``
        False: a stand-in of weight 0), added to ``stats``. Returns whether any process was
        signalled to stop, the step's sums (None: skipped as non-finite) and the norm."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.noise:
            step, finite, blown = self._accumulate(loader, real, n_utts)
        # one reduction decides for every process: skip the step? stop after it?
        bad, signalled, far = all_sum([0.0 if finite else 1.0, float(stopping), float(blown)],
                                      self.device)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),  # 0: no clipping
                                                   self.optim.grad_clip or math.inf)
        if bad or not torch.isfinite(grad_norm):
            stats.skipped += 1
            self._count_bad(True, epoch, number, "a non-finite loss or gradient (or the data "
                            "hold utterances whose labels do not fit their frames)")
            return bool(signalled), None, float(grad_norm)
        # losses ten times those of a uniform output, many steps running: blown up
        self._count_bad(bool(far), epoch, number,
                        "a loss over ten times that of a uniform output")
        stats.grad_norm += float(grad_norm)
        self.optimizer.step()
        if not _finite_weights(self.model):
            lr = self.optimizer.param_groups[0]["lr"]
            raise Diverged(self.exp_dir, epoch, number, "an update made the weights "
                           f"non-finite (learning rate {lr:g})")
        stats.add(step)
        return bool(signalled), step, float(grad_norm)

    def _count_bad(self, bad: bool, epoch: int, number: int, what: str) -> None:
        """One more bad step in a row (or the count reset); too many in a row: Diverged."""
        self.bad_in_a_row = self.bad_in_a_row + 1 if bad else 0
        if self.bad_in_a_row >= self.opts.max_bad_steps:
            raise Diverged(self.exp_dir, epoch, number,
                           f"{self.bad_in_a_row} steps in a row had {what}")

    def _accumulate(self, loader: Iterator[Batch], real: Sequence[bool], n_utts: int
                    ) -> tuple[EpochStats, bool, bool]:
        """Forward and backward this process's micro-batches of one step; their sums, and
        whether every loss was finite and whether one was blown up."""
        step, finite, blown = EpochStats(), True, False
        for a, is_real in enumerate(real):
            batch = next(loader)
            if self.augment is not None:
                batch.feats = self.augment(batch.feats, batch.lengths)
            sync = a == self.opts.accumulate - 1 or not self.world.active
            with nullcontext() if sync else self.net.no_sync():
                loss = self._backward(batch, is_real, n_utts)
            if is_real:
                value = loss.item()
                finite = finite and math.isfinite(value)
                blown = blown or value > BLOW_UP * batch.frames * math.log(self.vocab_size)
                step.loss += value
                step.utts += len(batch.indices)
                step.frames += batch.frames
                step.padded += batch.padded_frames
        return step, finite, blown

    def _backward(self, batch: Batch, real: bool, n_utts: int) -> torch.Tensor:
        """The loss of one micro-batch, its gradient added; out of memory: BatchTooLarge."""
        try:
            loss, _, _ = self.loss(self.net, batch, self.device, self.opts.precision)
            # DDP averages over processes: each scales its sum by processes / utterances,
            # so the update is the batch mean
            (loss / (n_utts / self.world.size) if real else loss * 0.0).backward()
        except Exception as e:
            if _is_oom(e):
                raise BatchTooLarge(_oom_message(batch, self.train_set, self.device,
                                                 self.opts)) from e
            raise
        return loss
