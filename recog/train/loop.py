"""The training loop: epochs of optimiser steps, validation, the learning-rate schedule,
early stopping, TensorBoard and the per-epoch record. Steps, resume and checkpoints belong
to ``step``, ``state`` and ``checkpointer``; this module only puts them in order. It knows
nothing of audio or ink: scoring goes through the ``normalize`` function it is given."""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recog.batching import CTCDataset, bucket_batches, load, rank_batches
from recog.distributed import World, broadcast, current_world, peer_failures, process_device
from recog.evaluate import evaluate
from recog.models.ctc import CTCModel
from recog.progress import Progress
from recog.tokens import Vocabulary
from recog.train.checkpointer import Checkpointer, Plateau, best_epochs, data_order
from recog.train.options import Diverged, Interrupted, OptimOptions, TrainerOptions
from recog.train.signals import StopSignals
from recog.train.state import EpochStats, TrainState
from recog.train.step import Augment, LossFn, Stepper, check_blow_up, ctc_loss, make_optimizer

log = logging.getLogger("recog.train")
Evaluate = Callable[..., tuple[float, float, dict[str, list[str]]]]


@dataclass
class Run:
    """The parts one fit's epochs share (built once by ``fit``)."""

    model: CTCModel
    vocab: Vocabulary
    train_set: CTCDataset
    dev_set: CTCDataset
    opts: TrainerOptions
    exp_dir: Path
    world: World
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: Plateau
    checkpointer: Checkpointer
    stepper: Stepper
    state: TrainState
    stop: StopSignals
    board: Any  # a TensorBoard SummaryWriter (rank 0, when installed)
    normalize: Callable[[Sequence[str]], Sequence[str]]
    evaluate: Evaluate


@dataclass
class EpochResult:
    """What an epoch's steps came to: the sums over every process, how many steps there
    were, the seconds they took and the clock at the (resumed) epoch's start."""

    stats: EpochStats
    steps: int
    train_seconds: float
    started: float


def fit(model: CTCModel, vocab: Vocabulary, train_set: CTCDataset, dev_set: CTCDataset,
        optim: OptimOptions, trainer: TrainerOptions, exp_dir: str | Path, config: dict,
        normalize: Callable[[Sequence[str]], Sequence[str]] = tuple,
        optimizer: torch.optim.Optimizer | None = None, augment: Augment | None = None,
        loss_fn: LossFn = ctc_loss, evaluate_fn: Evaluate = evaluate,
        front_end: dict | None = None) -> dict:
    """Train until ``opts.epochs`` or early stopping; write best.pt/last.pt; return history.

    ``best.pt`` is chosen on the dev error rate only. With ``trainer.resume`` and an existing
    ``last.pt`` training continues from it (model, optimiser, schedule, RNG states, history,
    and the position within the epoch). Inside a torch.distributed process group (torchrun)
    each process trains on its share of every step's batch and rank 0 evaluates and writes.
    ``optimizer`` replaces the configured one (fine-tuning: param groups, frozen layers).
    ``augment`` (features, lengths) -> features changes each training batch (SpecAugment);
    evaluation and decoding never see it. ``loss_fn`` and ``evaluate_fn`` compute a batch's
    loss and the dev figures (``ctc_loss``, ``recog.evaluate.evaluate``). ``front_end`` is
    the record every checkpoint keeps of the front end (``recog.tasks.front_end_record``).
    """
    exp_dir, opts = Path(exp_dir), trainer
    world = current_world()
    device = process_device(opts.device, world)
    if opts.accumulate < 1:
        raise ValueError(f"trainer.accumulate must be >= 1, not {opts.accumulate}")
    _check(opts, optim)
    if optim.schedule not in ("plateau", "linear"):
        raise ValueError(f"optim.schedule is plateau or linear, not {optim.schedule!r}")
    _place(model, device)
    optimizer = optimizer or make_optimizer(model, optim)  # fine-tuning passes its own
    scheduler = Plateau(optimizer, mode="min", factor=optim.lr_decay,
                        patience=optim.lr_patience)
    checkpointer = Checkpointer(exp_dir, model, vocab, config,
                                data_order(opts, config, train_set, dev_set, model, vocab), world,
                                front_end)
    state = checkpointer.start(opts, optimizer, scheduler, device)
    net: torch.nn.Module = model
    if world.active:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None)
    stepper = Stepper(net=net, model=model, optimizer=optimizer, optim=optim, opts=opts,
                      world=world, device=device, train_set=train_set, vocab_size=len(vocab),
                      exp_dir=exp_dir, loss=loss_fn, augment=augment)
    board = _tensorboard(exp_dir) if world.is_main else None
    with StopSignals() as stop, peer_failures("training"):
        run = Run(model=model, vocab=vocab, train_set=train_set, dev_set=dev_set, opts=opts,
                  exp_dir=exp_dir, world=world, device=device, optimizer=optimizer,
                  scheduler=scheduler, checkpointer=checkpointer, stepper=stepper, state=state,
                  stop=stop, board=board, normalize=normalize, evaluate=evaluate_fn)
        for epoch in range(state.epoch + 1, opts.epochs + 1):
            if opts.early_stop and _epochs_since_best(state.history) >= opts.early_stop:
                log.info("early stop: no better dev error rate for %d epochs", opts.early_stop)
                break
            if broadcast(_out_of_time(state.history, opts.max_minutes)):  # rank 0 decides
                log.info("time limit: another epoch would end past trainer.max_minutes=%g "
                         "(%d epochs, %.1f minutes so far)", opts.max_minutes,
                         len(state.history), _minutes(state.history))
                break
            result = train_epoch(run, epoch)
            dev_loss, dev_err = validate(run, epoch, result.steps)
            finish_epoch(run, epoch, result, dev_loss, dev_err)
            if stop.signum:  # arrived during the evaluation
                raise Interrupted(stop.signum, checkpointer.last, epoch + 1, 0)
        if opts.average > 1:
            average_best(run)
    return {"history": state.history, "best_dev_error_rate": state.best}


def average_best(run: Run) -> None:
    """best.pt = the mean of the weights of the ``trainer.average`` epochs with the lowest
    dev error rates, when its own dev error rate is no worse than the best epoch's (chosen
    on dev, like every epoch); otherwise best.pt stays that epoch."""
    epochs = [h["epoch"] for h in best_epochs(run.state.history, run.opts.average)]
    if len(epochs) < 2:
        return
    single = {k: v.clone() for k, v in run.model.state_dict().items()}
    run.model.load_state_dict(run.checkpointer.averaged(epochs))
    _, dev_err = validate(run, epochs[0], 0)
    if dev_err <= run.state.best:
        log.info("best.pt: the mean of epochs %s, dev error %.2f %% (epoch %d alone: %.2f %%)",
                 epochs, dev_err, epochs[0], run.state.best)
        run.checkpointer.save_best(epochs[0], dev_err, averaged=epochs)
        run.state.best = dev_err
    else:
        log.info("best.pt: epoch %d (%.2f %%); the mean of epochs %s is worse on dev "
                 "(%.2f %%)", epochs[0], run.state.best, epochs, dev_err)
    run.model.load_state_dict(single)


def train_epoch(run: Run, epoch: int) -> EpochResult:
    """The optimiser steps of ``epoch`` (from a resumed position's next one), writing last.pt
    every ``checkpoint_every`` steps and, then stopping, when a process was signalled."""
    opts, world, state = run.opts, run.world, run.state
    run.stepper.net.train()
    batches = bucket_batches(run.train_set.lengths, opts.batch_frames, opts.max_batch_utts,
                             shuffle=True, seed=opts.seed * 100003 + epoch)
    mine = rank_batches(batches, world.rank, world.size, opts.accumulate)
    first, stats = 0, EpochStats()
    if state.position is not None and state.position["epoch"] == epoch:
        first = state.position["step"]
        stats = EpochStats.resumed(state.position["stats"], world.is_main)  # the sums, once
    state.position = None
    # an empty share (a batch with fewer utterances than shares) runs a stand-in
    # utterance with weight 0, so that every process takes part in every reduction
    shares = [(part or batches[s][:1], bool(part)) for s in range(first, len(batches))
              for part in mine[s]]
    loader = load(run.train_set, [p for p, _ in shares], opts.loader_workers,
                  run.device.type == "cuda")
    bar = Progress(len(batches), f"epoch {epoch}", opts.progress and world.is_main)
    t0 = time.monotonic() - stats.seconds
    linear = run.stepper.optim.schedule == "linear"
    planned = planned_epochs(state.history, opts) if linear else 0
    for s in range(first, len(batches)):
        if linear:  # from the step's place alone: a resumed run sets what it would have
            set_lr_fraction(run.optimizer, 1 - (epoch - 1 + s / len(batches)) / planned)
        at = (s - first) * opts.accumulate
        real = [r for _, r in shares[at:at + opts.accumulate]]
        signalled, step, grad_norm = run.stepper.step(
            loader, real, len(batches[s]), run.stop.signum > 0, epoch, s + 1, stats)
        if step is not None:
            bar.update(s + 1, f"loss {stats.loss / max(stats.utts, 1):.2f}")
            if run.board is not None:  # per step; the epoch's figures follow per epoch
                run.board.add_scalar("step/train_loss", step.loss / max(step.utts, 1),
                                     state.global_step + 1)
                run.board.add_scalar("step/grad_norm", grad_norm, state.global_step + 1)
        state.global_step += 1
        if signalled or (opts.checkpoint_every and state.global_step % opts.checkpoint_every
                         == 0 and s + 1 < len(batches)):
            _save_position(run, epoch, s + 1, stats, t0)
            if signalled:  # perhaps on another process: torchrun passes SIGTERM
                signum = run.stop.signum or signal.SIGTERM
                log.warning("%s: step finished, last.pt written", signal.Signals(signum).name)
                raise Interrupted(signum, run.checkpointer.last, epoch, s + 1)
    loader.close()
    train_time = time.monotonic() - t0
    total = stats.summed(run.device)
    if total.skipped >= len(batches):
        raise Diverged(run.exp_dir, epoch, len(batches), "every step of the epoch had a "
                       "non-finite loss or gradient")
    check_blow_up(run.exp_dir, epoch, len(batches), "training",
                  total.loss / max(total.frames, 1), len(run.vocab))
    return EpochResult(total, len(batches), train_time, t0)


def _save_position(run: Run, epoch: int, step: int, stats: EpochStats, t0: float) -> None:
    """last.pt in the middle of ``epoch``: after ``step`` steps, with the sums so far."""
    stats.seconds = time.monotonic() - t0
    summed = stats.summed(run.device)
    run.state.position = {"epoch": epoch, "step": step, "stats": asdict(summed)}
    run.checkpointer.save_last(run.state, run.optimizer, run.scheduler)


def validate(run: Run, epoch: int, steps: int) -> tuple[float, float]:
    """The dev loss per utterance and error rate: computed on rank 0, the same on every
    process; a dev loss far above a uniform output's stops the run (``Diverged``)."""
    if run.world.is_main:
        dev_loss, dev_err, _ = run.evaluate(run.model, run.dev_set, run.vocab, run.normalize,
                                            run.opts.batch_frames, run.device)
    else:
        dev_loss = dev_err = math.nan
    dev_loss, dev_err = broadcast((dev_loss, dev_err))
    dev = run.dev_set
    check_blow_up(run.exp_dir, epoch, steps, "dev",
                  dev_loss * len(dev) / max(int(dev.lengths.sum()), 1), len(run.vocab))
    return dev_loss, dev_err


def finish_epoch(run: Run, epoch: int, result: EpochResult, dev_loss: float,
                 dev_err: float) -> None:
    """Schedule, record and log the epoch; keep its model as best.pt when it is the best
    so far (on a finite dev loss only); write last.pt and history.json."""
    state, total = run.state, result.stats
    if run.stepper.optim.schedule == "plateau":
        run.scheduler.step(dev_err)
    record = {
        "epoch": epoch, "train_loss": total.loss / max(total.utts, 1),
        "dev_loss": dev_loss, "dev_error_rate": dev_err,
        "frames_per_s": total.frames / max(result.train_seconds, 1e-9),
        "lr": run.optimizer.param_groups[0]["lr"], "skipped_steps": total.skipped,
        "grad_norm": total.grad_norm / max(result.steps - total.skipped, 1),
        "padding_fraction": 1 - total.frames / max(total.padded, 1),
        "processes": run.world.size, "seconds": time.monotonic() - result.started,
    }
    state.history.append(record)
    _report(run, record)
    if not math.isfinite(dev_loss):
        log.warning("epoch %d: the dev loss is not finite: this epoch's model is not "
                    "taken as best.pt", epoch)
    elif dev_err < state.best:
        state.best = dev_err
        run.checkpointer.save_best(epoch, dev_err)
    if run.opts.average > 1:
        run.checkpointer.keep_epoch(epoch, state.history, run.opts.average)
    state.epoch, state.position = epoch, None
    run.checkpointer.save_last(state, run.optimizer, run.scheduler)
    run.checkpointer.save_history(state.history)


def _report(run: Run, record: dict) -> None:
    """The epoch's figures to TensorBoard and, on rank 0, its line in the log."""
    if run.board is not None:
        for key in ("train_loss", "dev_loss", "dev_error_rate", "lr", "grad_norm",
                    "frames_per_s"):
            run.board.add_scalar(key, record[key], record["epoch"])
        run.board.flush()
    if run.world.is_main:
        skipped = record["skipped_steps"]
        log.info("epoch %3d | train loss %7.3f | dev loss %7.3f | dev error %6.2f %% | "
                 "%7.0f frames/s | lr %.2e | %ds%s", record["epoch"], record["train_loss"],
                 record["dev_loss"], record["dev_error_rate"], record["frames_per_s"],
                 record["lr"], record["seconds"],
                 f" | {skipped} steps skipped (non-finite)" if skipped else "")


def _place(model: CTCModel, device: torch.device) -> None:
    """Move the model to ``device``; on a GPU, with cuDNN's fused LSTM kernels."""
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.enabled = True
        if isinstance(model.rnn, torch.nn.LSTM):
            model.rnn.flatten_parameters()


def _tensorboard(exp_dir: Path):  # noqa: ANN202 - a SummaryWriter, or None
    """TensorBoard event files in the experiment folder, when ``tensorboard`` is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(exp_dir / "tensorboard"))


def _minutes(history: list[dict]) -> float:
    """Minutes the recorded epochs took (training and evaluation)."""
    return sum(h["seconds"] for h in history) / 60


def _out_of_time(history: list[dict], max_minutes: float) -> bool:
    """Whether one more epoch, as slow as the slowest so far, would end past
    ``max_minutes`` (never with no limit or no epoch done). From the history, so a resumed
    run decides as the uninterrupted one would have."""
    if max_minutes <= 0 or not history:
        return False
    return _minutes(history) + max(h["seconds"] for h in history) / 60 > max_minutes


def planned_epochs(history: list[dict], opts: TrainerOptions) -> int:
    """The epochs training is expected to run: ``trainer.epochs``, or, under
    ``trainer.max_minutes``, those done plus as many as fit in the time left, each as slow as
    the slowest so far (what ``_out_of_time`` will decide; at least the next one)."""
    if opts.max_minutes <= 0 or not history:
        return opts.epochs
    slowest = max(h["seconds"] for h in history) / 60
    more = int((opts.max_minutes - _minutes(history)) // slowest)
    return max(len(history) + 1, min(opts.epochs, len(history) + more))


def set_lr_fraction(optimizer: torch.optim.Optimizer, fraction: float) -> None:
    """Each parameter group's learning rate = its first one × ``fraction`` (the linear
    schedule; the first is kept in the group, so it travels with last.pt)."""
    for group in optimizer.param_groups:
        group.setdefault("base_lr", group["lr"])
        group["lr"] = group["base_lr"] * max(fraction, 0.0)


def _check(opts: TrainerOptions, optim: OptimOptions) -> None:
    """Refuse option values that would train nonsense or fail deep inside torch."""
    at_least = {"trainer.epochs": (opts.epochs, 1), "trainer.early_stop": (opts.early_stop, 0),
                "trainer.batch_frames": (opts.batch_frames, 1),
                "trainer.max_batch_utts": (opts.max_batch_utts, 1),
                "trainer.max_bad_steps": (opts.max_bad_steps, 1),
                "trainer.checkpoint_every": (opts.checkpoint_every, 0),
                "trainer.max_minutes": (opts.max_minutes, 0), "trainer.seed": (opts.seed, 0),
                "trainer.average": (opts.average, 0),
                "trainer.loader_workers": (opts.loader_workers, 0),
                "optim.lr_patience": (optim.lr_patience, 0)}
    for key, (value, low) in at_least.items():
        if value < low:
            raise ValueError(f"{key} must be >= {low}, not {value}")
    if not opts.dist_timeout_s > 0:
        raise ValueError(f"trainer.dist_timeout_s must be > 0 seconds, not {opts.dist_timeout_s}")
    if opts.backend not in ("auto", "gloo", "nccl"):
        raise ValueError(f"trainer.backend is auto, gloo or nccl, not {opts.backend!r}")
    if not 0 < optim.lr_decay < 1:
        raise ValueError(f"optim.lr_decay multiplies the learning rate on a plateau: it lies "
                         f"in (0, 1), not {optim.lr_decay}")


def _epochs_since_best(history: list[dict]) -> int:
    """Epochs since the one with the lowest dev error rate (0 with no epoch done)."""
    if not history:
        return 0
    rates = [h["dev_error_rate"] for h in history]
    return len(rates) - 1 - int(np.argmin(rates))
