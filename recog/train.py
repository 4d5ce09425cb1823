"""The training loop: CTC loss, optimiser, schedule, clipping, weight noise, early stopping,
mixed precision, DDP, atomic checkpoints, mid-epoch resume and stopping on signals. It knows
nothing of audio or ink: scoring goes through the ``normalize`` function it is given."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from recog.atomic import remove_stale_temps
from recog.batching import Batch, CTCDataset, bucket_batches, iterate, load, rank_batches
from recog.data.utterance import DataError, atomic_write_text
from recog.decode.greedy import greedy_decode
from recog.distributed import (
    all_sum,
    broadcast,
    current_world,
    gather,
    peer_failures,
    process_device,
)
from recog.metrics import error_count
from recog.models.checkpoint import read_payload, save_checkpoint
from recog.models.ctc import CTCModel
from recog.progress import Progress
from recog.tokens import Vocabulary

log = logging.getLogger("recog.train")


@dataclass
class OptimOptions:
    """The ``optim`` config group: optimiser, schedule, clipping, weight noise."""

    name: str = "adam"  # adam | sgd
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    weight_noise: float = 0.0  # std of Gaussian weight noise per step (Graves 2013: 0.075)
    lr_decay: float = 0.5  # multiply the learning rate by this ...
    lr_patience: int = 1  # ... after this many epochs without a better dev error rate


@dataclass
class TrainerOptions:
    """The ``trainer`` config group: epochs, batching, device, precision, processes, seed,
    checkpoints, stopping. A step's batch (``batch_frames``, ``max_batch_utts``) is global:
    the union of every process's micro-batches, so the updates do not depend on how many
    processes or accumulation steps share it."""

    epochs: int = 20
    early_stop: int = 4  # stop after this many epochs without a better dev error rate
    batch_frames: int = 12000  # padded input frames per optimiser step (all processes)
    max_batch_utts: int = 64  # utterances per optimiser step (all processes)
    accumulate: int = 1  # micro-batches per step and process: less memory, same update
    seed: int = 0
    device: str = "cpu"  # cpu | cuda (under torchrun: each process's own GPU)
    precision: str = "fp32"  # fp32 | bf16: autocast of the model; the CTC loss stays float32
    loader_workers: int = 0  # DataLoader processes collating batches (0: in this process)
    num_threads: int = 0  # torch intra-op threads; 0 = auto (recog.threads: half the cores)
    max_bad_steps: int = 20  # consecutive non-finite losses before giving up
    resume: bool = True  # continue from last.pt when the experiment folder has one
    overwrite: bool = False  # resume=false may replace a finished run's best.pt
    checkpoint_every: int = 200  # also write last.pt every this many steps (0: epoch ends)
    backend: str = "auto"  # torch.distributed under torchrun: auto = nccl on GPU, gloo on CPU
    dist_timeout_s: float = 600.0  # rendezvous and collective timeout under torchrun
    progress: bool = True


class Interrupted(RuntimeError):
    """SIGINT or SIGTERM arrived: the step was finished and last.pt written."""

    def __init__(self, signum: int, path: Path, epoch: int, step: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name} at epoch {epoch}, step "
                         f"{step}; {path} holds that position: run the same command again "
                         "to resume")


class BatchTooLarge(MemoryError):
    """A training step ran out of memory; says which utterances were in the batch."""


class Diverged(FloatingPointError):
    """Training blew up (non-finite weights, or losses far above chance for many steps):
    stopped before a checkpoint holds the damage."""

    def __init__(self, exp_dir: Path, epoch: int, step: int, what: str):
        super().__init__(f"{exp_dir}: training diverged at epoch {epoch}, step {step}: {what}; "
                         "stopped (a best.pt holds the best model so far): lower optim.lr or "
                         "tighten optim.grad_clip, then run again with trainer.resume=false "
                         "trainer.overwrite=true (or another name=...)")


def seed_everything(seed: int) -> None:
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
    if "python" in state:
        random.setstate(state["python"])
        n = state["numpy"]
        np.random.set_state((n["kind"], n["key"].numpy().astype(np.uint32), n["pos"],
                             n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _flat(prefix: str, value: object) -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for k, v in value.items():
            out.update(_flat(f"{prefix}.{k}", v))
        return out
    return {prefix: list(value) if isinstance(value, tuple) else value}


def _fingerprint(dataset: CTCDataset) -> str:
    """The utterances, their lengths and labels of a split, in a few characters."""
    h = hashlib.sha256()
    for i, length, target in zip(dataset.ids, dataset.lengths.tolist(), dataset.targets,
                                 strict=True):
        h.update(f"{i}\t{length}\t{list(target)}\n".encode())
    return f"{len(dataset)} utterances, {int(dataset.lengths.sum())} frames, {h.hexdigest()[:12]}"


def data_order(trainer: TrainerOptions, config: dict, train_set: CTCDataset,
               dev_set: CTCDataset, model: CTCModel, vocab: Vocabulary) -> dict[str, object]:
    """What fixes the order and content of every training step and the model's shape,
    flattened to dotted keys: batching and seed, the corpus and front end, both splits'
    contents, the network options and the vocabulary. ``last.pt`` keeps it; resuming under
    anything else would skip or repeat data (the epoch's batches are rebuilt from it) or
    load weights into another network. Processes and accumulation may change: a step's
    batch is global."""
    order: dict[str, object] = {f"trainer.{k}": getattr(trainer, k)
                                for k in ("batch_frames", "max_batch_utts", "seed")}
    for group in ("corpus", "features", "augment"):
        if isinstance(config.get(group), dict):
            order.update(_flat(group, config[group]))
    order["train split"] = _fingerprint(train_set)
    order["dev split"] = _fingerprint(dev_set)
    order["model.input_dim"] = model.input_dim
    order.update(_flat("model", model.options.as_dict()))
    order["vocabulary"] = " ".join(vocab.tokens)
    return order


def check_resumable(last: Path, saved: dict | None, now: dict[str, object]) -> None:
    """Refuse to resume ``last`` under settings that change the data order or the model
    (``data_order``), naming each key that differs, with its value then and now."""
    if saved == now:
        return
    if saved is None:
        differ = "it records no settings (written by an older recog)"
    else:
        keys = sorted(set(saved) | set(now), key=str)
        diffs = [f"{k}: {saved.get(k, '(unset)')!s:.60} -> {now.get(k, '(unset)')!s:.60}"
                 for k in keys if saved.get(k) != now.get(k)]
        differ = "; ".join(diffs[:6]) + (f" and {len(diffs) - 6} more" if len(diffs) > 6
                                         else "")
    raise DataError(last, f"cannot resume: this run's settings differ from the run that "
                    f"wrote it ({differ}); resuming would skip or repeat data. Rerun with "
                    "the settings it was written with, train into another experiment folder "
                    "(name=...), or start afresh with trainer.resume=false "
                    "trainer.overwrite=true")


def make_optimizer(model: torch.nn.Module, opts: OptimOptions, params: Iterable | None = None
                   ) -> torch.optim.Optimizer:
    """The configured optimiser over ``params`` (parameters or param groups; default: all)."""
    params = model.parameters() if params is None else params
    if not 0 < opts.lr < torch.finfo(torch.float32).max:
        raise ValueError(f"optim.lr={opts.lr}: the learning rate must be a positive number "
                         "that float32 holds (1e-3 is usual for Adam)")
    if opts.name == "adam":
        return torch.optim.Adam(params, lr=opts.lr, weight_decay=opts.weight_decay)
    if opts.name == "sgd":
        return torch.optim.SGD(params, lr=opts.lr, momentum=opts.momentum,
                               weight_decay=opts.weight_decay)
    raise ValueError(f"unknown optim.name {opts.name!r} (adam or sgd)")


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


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


@torch.no_grad()
def run_model(model: CTCModel, dataset: CTCDataset, batch_frames: int, device: torch.device
              ) -> Iterator[tuple[Batch, torch.Tensor, torch.Tensor]]:
    """Forward every utterance of ``dataset`` in length-bucketed batches (eval mode)."""
    model.eval()
    for batch in iterate(dataset, bucket_batches(dataset.lengths, batch_frames)):
        log_probs, out_lens = model(batch.feats.to(device), batch.lengths.to(device))
        yield batch, log_probs, out_lens


def evaluate(model: CTCModel, dataset: CTCDataset, vocab: Vocabulary,
             normalize: Callable[[Sequence[str]], Sequence[str]], batch_frames: int,
             device: torch.device) -> tuple[float, float, dict[str, list[str]]]:
    """Per-utterance CTC loss, greedy error rate after ``normalize``, and the hypotheses."""
    total_loss, hyps = 0.0, {}
    for batch, log_probs, out_lens in run_model(model, dataset, batch_frames, device):
        total_loss += F.ctc_loss(log_probs.transpose(0, 1), batch.targets.to(device), out_lens,
                                 batch.target_lengths.to(device), reduction="sum").item()
        for i, ids in zip(batch.indices, greedy_decode(log_probs, out_lens), strict=True):
            hyps[dataset.ids[i]] = vocab.decode(ids)
    errors = n = 0
    for i, t in enumerate(dataset.targets):  # plain edit distance: the fast path
        ref = normalize(vocab.decode(t))
        errors += error_count(ref, normalize(hyps[dataset.ids[i]]))
        n += len(ref)
    return total_loss / max(len(dataset), 1), 100.0 * errors / max(n, 1), hyps


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


class _StopSignals:
    """Turns SIGINT/SIGTERM into a flag checked after each step (a second SIGINT aborts).
    The handler only sets the flag: it runs wherever the interpreter happens to be, inside
    the step's native calls included, so it does no I/O (the loop logs the stop)."""

    def __init__(self) -> None:
        self.signum = 0
        self.previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@dataclass
class _EpochStats:
    """Running sums of one epoch (over every process once summed)."""

    loss: float = 0.0
    utts: float = 0.0
    frames: float = 0.0
    padded: float = 0.0
    skipped: int = 0
    grad_norm: float = 0.0
    seconds: float = 0.0

    def summed(self, device: torch.device) -> _EpochStats:
        """Totals over the processes (skips and norms are the same on every process)."""
        loss, utts, frames, padded = all_sum([self.loss, self.utts, self.frames, self.padded],
                                             device)
        return _EpochStats(loss, utts, frames, padded, self.skipped, self.grad_norm,
                           self.seconds)


def fit(model: CTCModel, vocab: Vocabulary, train_set: CTCDataset, dev_set: CTCDataset,
        optim: OptimOptions, trainer: TrainerOptions, exp_dir: str | Path, config: dict,
        normalize: Callable[[Sequence[str]], Sequence[str]] = tuple,
        optimizer: torch.optim.Optimizer | None = None,
        augment: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> dict:
    """Train until ``opts.epochs`` or early stopping; write best.pt/last.pt; return history.

    ``best.pt`` is chosen on the dev error rate only. With ``trainer.resume`` and an existing
    ``last.pt`` training continues from it (model, optimiser, schedule, RNG states, history,
    and the position within the epoch). Inside a torch.distributed process group (torchrun)
    each process trains on its share of every step's batch and rank 0 evaluates and writes.
    ``optimizer`` replaces the configured one (fine-tuning: param groups, frozen layers).
    ``augment`` (features, lengths) -> features changes each training batch (SpecAugment);
    evaluation and decoding never see it.
    """
    exp_dir, opts = Path(exp_dir), trainer
    world = current_world()
    device = process_device(opts.device, world)
    if opts.accumulate < 1:
        raise ValueError(f"trainer.accumulate must be >= 1, not {opts.accumulate}")
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.enabled = True  # the fused cuDNN LSTM kernels
        if isinstance(model.rnn, torch.nn.LSTM):
            model.rnn.flatten_parameters()
    optimizer = optimizer or make_optimizer(model, optim)  # fine-tuning passes its own
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=optim.lr_decay, patience=optim.lr_patience)
    history: list[dict] = []
    best, start_epoch, position, global_step = math.inf, 1, None, 0
    last = exp_dir / "last.pt"
    order = data_order(opts, config, train_set, dev_set, model, vocab)
    if world.is_main:
        for tmp in remove_stale_temps(exp_dir):
            log.warning("removed %s, left by a run that was killed while writing it", tmp)
    if opts.resume and last.is_file():
        try:
            state = read_payload(last, device)
        except DataError as e:
            raise DataError(last, f"cannot resume from it: {e.reason}; move it away to resume "
                            "from nothing, or start afresh with trainer.resume=false "
                            "trainer.overwrite=true") from None
        check_resumable(last, state.get("data_order"), order)
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise DataError(last, f"does not fit this model or optimiser ({e}); resume with "
                            "the settings it was written with, or start afresh with "
                            "trainer.resume=false") from None
        scheduler.load_state_dict(state["scheduler"])
        rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
        if world.rank < len(rngs):
            set_rng_state(rngs[world.rank])
        else:  # more processes than the run that wrote last.pt: fresh streams for the new ones
            seed_everything(opts.seed + 7919 * world.rank + state.get("global_step", 0))
        history, best = state["history"], state["best"]
        start_epoch, position = state["epoch"] + 1, state.get("position")
        global_step = state.get("global_step", 0)
        where = f", step {position['step']}" if position else ""
        log.info("resumed from %s at epoch %d%s (%s)", last, start_epoch, where,
                 f"best dev error {best:.2f} %" if math.isfinite(best) else "no epoch done yet")
    else:
        if (exp_dir / "best.pt").is_file() and not opts.overwrite:
            raise DataError(exp_dir / "best.pt", "trainer.resume=false would replace this "
                            "finished run's model; add trainer.overwrite=true to do so, or "
                            "train into another experiment folder (name=...)")
        seed_everything(opts.seed + world.rank)
    net: torch.nn.Module = model
    if world.active:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None)
    noise = _WeightNoise(model, optim.weight_noise)
    board = _tensorboard(exp_dir) if world.is_main else None
    pin = device.type == "cuda"
    bad_in_a_row = 0

    def save_last(epoch_done: int, pos: dict | None) -> None:
        rngs = gather(rng_state())  # a collective: every process calls save_last
        if world.is_main:
            save_checkpoint(last, model, vocab, config, epoch=epoch_done, best=best,
                            history=history, optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(), rng=rngs, position=pos,
                            global_step=global_step, world_size=world.size,
                            data_order=order)

    with _StopSignals() as stop, peer_failures("training"):
        for epoch in range(start_epoch, opts.epochs + 1):
            if _epochs_since_best(history) >= opts.early_stop:
                log.info("early stop: no better dev error rate for %d epochs", opts.early_stop)
                break
            net.train()
            batches = bucket_batches(train_set.lengths, opts.batch_frames, opts.max_batch_utts,
                                     shuffle=True, seed=opts.seed * 100003 + epoch)
            mine = rank_batches(batches, world.rank, world.size, opts.accumulate)
            first, stats = 0, _EpochStats()
            if position is not None and position["epoch"] == epoch:
                first = position["step"]
                if world.is_main:  # the sums so far, once
                    stats = _EpochStats(**position["stats"])
                else:
                    stats = _EpochStats(skipped=position["stats"]["skipped"],
                                        grad_norm=position["stats"]["grad_norm"],
                                        seconds=position["stats"]["seconds"])
            position = None
            # an empty share (a batch with fewer utterances than shares) runs a stand-in
            # utterance with weight 0, so that every process takes part in every reduction
            shares = [(part or batches[s][:1], bool(part)) for s in range(first, len(batches))
                      for part in mine[s]]
            loader = load(train_set, [p for p, _ in shares], opts.loader_workers, pin)
            bar = Progress(len(batches), f"epoch {epoch}", opts.progress and world.is_main)
            t0 = time.monotonic() - stats.seconds
            for s in range(first, len(batches)):
                n_utts = len(batches[s])
                optimizer.zero_grad(set_to_none=True)
                step = _EpochStats()
                finite, blown = True, False
                with noise:
                    for a in range(opts.accumulate):
                        batch = next(loader)
                        if augment is not None:
                            batch.feats = augment(batch.feats, batch.lengths)
                        real = shares[(s - first) * opts.accumulate + a][1]
                        sync = a == opts.accumulate - 1 or not world.active
                        with nullcontext() if sync else net.no_sync():
                            try:
                                loss, _, _ = ctc_loss(net, batch, device, opts.precision)
                                # DDP averages over processes: each scales its sum by
                                # processes / utterances, so the update is the batch mean
                                (loss / (n_utts / world.size) if real else loss * 0.0
                                 ).backward()
                            except Exception as e:
                                if _is_oom(e):
                                    raise BatchTooLarge(
                                        _oom_message(batch, train_set, device, opts)) from e
                                raise
                        if real:
                            value = loss.item()
                            finite = finite and math.isfinite(value)
                            blown = blown or value > _BLOW_UP * batch.frames * math.log(
                                len(vocab))
                            step.loss += value
                            step.utts += len(batch.indices)
                            step.frames += batch.frames
                            step.padded += batch.padded_frames
                # one reduction decides for every process: skip the step? stop after it?
                bad, signalled, far = all_sum([0.0 if finite else 1.0, float(stop.signum > 0),
                                               float(blown)], device)
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
                if bad or not torch.isfinite(grad_norm):
                    stats.skipped += 1
                    bad_in_a_row += 1
                    if bad_in_a_row >= opts.max_bad_steps:
                        raise Diverged(exp_dir, epoch, s + 1,
                                       f"{bad_in_a_row} steps in a row had a non-finite loss or "
                                       "gradient (or the data hold utterances whose labels do "
                                       "not fit their frames)")
                else:
                    # losses ten times those of a uniform output, many steps running: blown up
                    bad_in_a_row = bad_in_a_row + 1 if far else 0
                    if bad_in_a_row >= opts.max_bad_steps:
                        raise Diverged(exp_dir, epoch, s + 1,
                                       f"{bad_in_a_row} steps in a row had a loss over ten "
                                       "times that of a uniform output")
                    stats.grad_norm += float(grad_norm)
                    optimizer.step()
                    if not _finite_weights(model):
                        lr = optimizer.param_groups[0]["lr"]
                        raise Diverged(exp_dir, epoch, s + 1, "an update made the weights "
                                       f"non-finite (learning rate {lr:g})")
                    stats.loss += step.loss
                    stats.utts += step.utts
                    stats.frames += step.frames
                    stats.padded += step.padded
                    bar.update(s + 1, f"loss {stats.loss / max(stats.utts, 1):.2f}")
                    if board is not None:  # per step; the epoch's figures follow per epoch
                        board.add_scalar("step/train_loss", step.loss / max(step.utts, 1),
                                         global_step + 1)
                        board.add_scalar("step/grad_norm", float(grad_norm), global_step + 1)
                global_step += 1
                if signalled or (opts.checkpoint_every and global_step % opts.checkpoint_every
                                 == 0 and s + 1 < len(batches)):
                    stats.seconds = time.monotonic() - t0
                    summed = stats.summed(device)
                    save_last(epoch - 1, {"epoch": epoch, "step": s + 1,
                                          "stats": asdict(summed)})
                    if signalled:  # perhaps on another process: torchrun passes SIGTERM
                        log.warning("%s: step finished, last.pt written", signal.Signals(
                            stop.signum or signal.SIGTERM).name)
                        raise Interrupted(stop.signum or signal.SIGTERM, last, epoch, s + 1)
            loader.close()
            train_time = time.monotonic() - t0
            total = stats.summed(device)
            if total.skipped >= len(batches):
                raise Diverged(exp_dir, epoch, len(batches), "every step of the epoch had a "
                               "non-finite loss or gradient")
            _check_blow_up(exp_dir, epoch, len(batches), "training",
                           total.loss / max(total.frames, 1), len(vocab))
            if world.is_main:
                dev_loss, dev_err, _ = evaluate(model, dev_set, vocab, normalize,
                                                opts.batch_frames, device)
            else:
                dev_loss = dev_err = math.nan
            dev_loss, dev_err = broadcast((dev_loss, dev_err))
            _check_blow_up(exp_dir, epoch, len(batches), "dev",
                           dev_loss * len(dev_set) / max(int(dev_set.lengths.sum()), 1),
                           len(vocab))
            scheduler.step(dev_err)
            record = {
                "epoch": epoch, "train_loss": total.loss / max(total.utts, 1),
                "dev_loss": dev_loss, "dev_error_rate": dev_err,
                "frames_per_s": total.frames / max(train_time, 1e-9),
                "lr": optimizer.param_groups[0]["lr"], "skipped_steps": total.skipped,
                "grad_norm": total.grad_norm / max(len(batches) - total.skipped, 1),
                "padding_fraction": 1 - total.frames / max(total.padded, 1),
                "processes": world.size, "seconds": time.monotonic() - t0,
            }
            history.append(record)
            if board is not None:
                for key in ("train_loss", "dev_loss", "dev_error_rate", "lr", "grad_norm",
                            "frames_per_s"):
                    board.add_scalar(key, record[key], epoch)
                board.flush()
            if world.is_main:
                log.info("epoch %3d | train loss %7.3f | dev loss %7.3f | dev error %6.2f %% | "
                         "%7.0f frames/s | lr %.2e | %ds%s", epoch, record["train_loss"],
                         dev_loss, dev_err, record["frames_per_s"], record["lr"],
                         record["seconds"], f" | {total.skipped} steps skipped (non-finite)"
                         if total.skipped else "")
            if not math.isfinite(dev_loss):
                log.warning("epoch %d: the dev loss is not finite: this epoch's model is not "
                            "taken as best.pt", epoch)
            elif dev_err < best:
                best = dev_err
                if world.is_main:
                    save_checkpoint(exp_dir / "best.pt", model, vocab, config, epoch=epoch,
                                    dev_error_rate=dev_err)
            save_last(epoch, None)
            if world.is_main:
                atomic_write_text(exp_dir / "history.json", json.dumps(history, indent=1))
            if stop.signum:  # arrived during the evaluation
                raise Interrupted(stop.signum, last, epoch + 1, 0)
    return {"history": history, "best_dev_error_rate": best}


_BLOW_UP = 10  # a loss this many times a uniform output's (log V nats per frame): blown up


def _check_blow_up(exp_dir: Path, epoch: int, step: int, which: str, per_frame: float,
                   vocab_size: int) -> None:
    """Stop when an epoch's finite loss per frame is ``_BLOW_UP`` times what a uniform
    output distribution scores: no model that learns anything gets there."""
    chance = math.log(vocab_size)
    if per_frame > _BLOW_UP * chance:
        raise Diverged(exp_dir, epoch, step, f"the {which} loss is {per_frame:.3g} per frame, "
                       f"over {_BLOW_UP} times that of a uniform output ({chance:.3g})")


def _finite_weights(model: torch.nn.Module) -> bool:
    """Every parameter is finite (one reduction per tensor, no copy to the host per tensor)."""
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


def _tensorboard(exp_dir: Path):  # noqa: ANN202 - a SummaryWriter, or None
    """TensorBoard event files in the experiment folder, when ``tensorboard`` is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(exp_dir / "tensorboard"))


def _epochs_since_best(history: list[dict]) -> int:
    if not history:
        return 0
    rates = [h["dev_error_rate"] for h in history]
    return len(rates) - 1 - int(np.argmin(rates))
