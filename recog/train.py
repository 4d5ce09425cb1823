"""The training loop: CTC loss, optimiser, schedule, clipping, weight noise, early stopping,
atomic checkpoints and resume. It knows nothing of audio or ink: scoring goes through the
``normalize`` function it is given."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from recog.batching import Batch, CTCDataset, bucket_batches, iterate
from recog.data.utterance import atomic_write_text
from recog.decode.greedy import greedy_decode
from recog.features.cache import Progress
from recog.metrics import error_count
from recog.models.checkpoint import save_checkpoint
from recog.models.ctc import CTCModel
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
    """The ``trainer`` config group: epochs, batching, device, seed, stopping."""

    epochs: int = 20
    early_stop: int = 4  # stop after this many epochs without a better dev error rate
    batch_frames: int = 12000  # padded input frames per batch
    max_batch_utts: int = 64
    seed: int = 0
    device: str = "cpu"
    num_threads: int = 0  # torch intra-op threads; 0 = torch's default
    max_bad_steps: int = 20  # consecutive non-finite losses before giving up
    resume: bool = True  # continue from last.pt when the experiment folder has one
    progress: bool = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: torch.nn.Module, opts: OptimOptions, params: Iterable | None = None
                   ) -> torch.optim.Optimizer:
    """The configured optimiser over ``params`` (parameters or param groups; default: all)."""
    params = model.parameters() if params is None else params
    if opts.name == "adam":
        return torch.optim.Adam(params, lr=opts.lr, weight_decay=opts.weight_decay)
    if opts.name == "sgd":
        return torch.optim.SGD(params, lr=opts.lr, momentum=opts.momentum,
                               weight_decay=opts.weight_decay)
    raise ValueError(f"unknown optim.name {opts.name!r} (adam or sgd)")


def ctc_loss(model: CTCModel, batch: Batch, device: torch.device
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed CTC loss of a batch, with the log-probs and output lengths it came from."""
    log_probs, out_lens = model(batch.feats.to(device), batch.lengths.to(device))
    loss = F.ctc_loss(log_probs.transpose(0, 1), batch.targets.to(device), out_lens,
                      batch.target_lengths.to(device), blank=0, reduction="sum",
                      zero_infinity=False)
    return loss, log_probs, out_lens


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


def fit(model: CTCModel, vocab: Vocabulary, train_set: CTCDataset, dev_set: CTCDataset,
        optim: OptimOptions, trainer: TrainerOptions, exp_dir: str | Path, config: dict,
        normalize: Callable[[Sequence[str]], Sequence[str]] = tuple,
        optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Train until ``opts.epochs`` or early stopping; write best.pt/last.pt; return history.

    ``best.pt`` is chosen on the dev error rate only. With ``trainer.resume`` and an existing
    ``last.pt`` training continues from it (model, optimiser, schedule, RNG, history).
    ``optimizer`` replaces the configured one (fine-tuning: param groups, frozen layers).
    """
    exp_dir, opts = Path(exp_dir), trainer
    device = torch.device(opts.device)
    model.to(device)
    optimizer = optimizer or make_optimizer(model, optim)  # fine-tuning passes its own
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=optim.lr_decay, patience=optim.lr_patience)
    history: list[dict] = []
    best, start_epoch = math.inf, 1
    last = exp_dir / "last.pt"
    if opts.resume and last.is_file():
        state = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        history, best = state["history"], state["best"]
        start_epoch = state["epoch"] + 1
        log.info("resumed from %s at epoch %d (best dev error %.2f %%)", last, start_epoch, best)
    else:
        seed_everything(opts.seed)
    noise = _WeightNoise(model, optim.weight_noise)
    board = _tensorboard(exp_dir)
    bad_in_a_row = 0
    for epoch in range(start_epoch, opts.epochs + 1):
        if _epochs_since_best(history) >= opts.early_stop:
            log.info("early stop: no better dev error rate for %d epochs", opts.early_stop)
            break
        model.train()
        batches = bucket_batches(train_set.lengths, opts.batch_frames, opts.max_batch_utts,
                                 shuffle=True, seed=opts.seed * 100003 + epoch)
        bar = Progress(len(batches), f"epoch {epoch}", opts.progress)
        loss_sum, utts, frames, skipped, t0 = 0.0, 0, 0, 0, time.monotonic()
        norm_sum = 0.0
        for n, batch in enumerate(iterate(train_set, batches), 1):
            optimizer.zero_grad(set_to_none=True)
            with noise:
                loss, _, _ = ctc_loss(model, batch, device)
                finite = bool(torch.isfinite(loss))
                if finite:
                    (loss / len(batch.indices)).backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
            if not finite or not torch.isfinite(grad_norm):
                skipped += 1
                bad_in_a_row += 1
                if bad_in_a_row >= opts.max_bad_steps:
                    raise FloatingPointError(
                        f"{bad_in_a_row} training steps in a row had a non-finite loss or "
                        "gradient: lower the learning rate, tighten grad_clip, or check the "
                        "data for utterances whose labels do not fit their frames")
                continue
            bad_in_a_row = 0
            norm_sum += float(grad_norm)
            optimizer.step()
            loss_sum += loss.item()
            utts += len(batch.indices)
            frames += batch.frames
            bar.update(n, f"loss {loss_sum / max(utts, 1):.2f}")
        train_time = time.monotonic() - t0
        dev_loss, dev_err, _ = evaluate(model, dev_set, vocab, normalize, opts.batch_frames,
                                        device)
        scheduler.step(dev_err)
        record = {
            "epoch": epoch, "train_loss": loss_sum / max(utts, 1), "dev_loss": dev_loss,
            "dev_error_rate": dev_err, "frames_per_s": frames / max(train_time, 1e-9),
            "lr": optimizer.param_groups[0]["lr"], "skipped_steps": skipped,
            "grad_norm": norm_sum / max(len(batches) - skipped, 1),
            "seconds": time.monotonic() - t0,
        }
        history.append(record)
        if board is not None:
            for key in ("train_loss", "dev_loss", "dev_error_rate", "lr", "grad_norm",
                        "frames_per_s"):
                board.add_scalar(key, record[key], epoch)
            board.flush()
        log.info("epoch %3d | train loss %7.3f | dev loss %7.3f | dev error %6.2f %% | "
                 "%7.0f frames/s | lr %.2e | %ds%s", epoch, record["train_loss"], dev_loss,
                 dev_err, record["frames_per_s"], record["lr"], record["seconds"],
                 f" | {skipped} steps skipped (non-finite)" if skipped else "")
        if dev_err < best:
            best = dev_err
            save_checkpoint(exp_dir / "best.pt", model, vocab, config, epoch=epoch,
                            dev_error_rate=dev_err)
        save_checkpoint(last, model, vocab, config, epoch=epoch, best=best, history=history,
                        optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                        rng={"torch": torch.get_rng_state()})
        atomic_write_text(exp_dir / "history.json", json.dumps(history, indent=1))
    return {"history": history, "best_dev_error_rate": best}


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
