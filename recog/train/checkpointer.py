"""The experiment folder's training files: ``last.pt`` (the run's full state, for resuming),
``best.pt`` (the model of the best dev error rate) and ``history.json``, and the checks that
keep a resume honest (same data order, same network) and a finished run from being replaced."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import torch

from recog.atomic import atomic_write_text, remove_stale_temps
from recog.batching import CTCDataset
from recog.data.utterance import DataError
from recog.distributed import World, gather
from recog.models.checkpoint import read_payload, save_checkpoint
from recog.models.ctc import CTCModel
from recog.tokens import Vocabulary
from recog.train.options import TrainerOptions
from recog.train.state import TrainState, rng_state, seed_everything

log = logging.getLogger("recog.train")
Plateau = torch.optim.lr_scheduler.ReduceLROnPlateau


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


def best_epochs(history: list[dict], count: int) -> list[dict]:
    """The ``count`` epochs of ``history`` with the lowest finite dev error rates, best
    first (the earlier of equal ones first)."""
    finite = [h for h in history if math.isfinite(h["dev_loss"])]
    return sorted(finite, key=lambda h: (h["dev_error_rate"], h["epoch"]))[:count]


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


class Checkpointer:
    """Owns ``exp_dir``'s last.pt, best.pt and history.json for one fit. Every process makes
    one; only the main one (rank 0) writes."""

    def __init__(self, exp_dir: Path, model: CTCModel, vocab: Vocabulary, config: dict,
                 order: dict[str, object], world: World, front_end: dict | None = None):
        self.exp_dir, self.model, self.vocab, self.config = exp_dir, model, vocab, config
        self.order, self.world = order, world
        self.front_end = {} if front_end is None else {"front_end": front_end}
        self.last, self.best = exp_dir / "last.pt", exp_dir / "best.pt"

    def start(self, opts: TrainerOptions, optimizer: torch.optim.Optimizer,
              scheduler: Plateau, device: torch.device) -> TrainState:
        """Clear what a killed writer left, then resume from last.pt (``trainer.resume``) or
        start afresh (refusing to replace a finished run unless ``trainer.overwrite``)."""
        if self.world.is_main:
            for tmp in remove_stale_temps(self.exp_dir):
                log.warning("removed %s, left by a run that was killed while writing it", tmp)
        if opts.resume and self.last.is_file():
            state = self.resume(optimizer, scheduler, device)
            state.restore_rng(self.world.rank, opts.seed)
            return state
        if self.best.is_file() and not opts.overwrite:
            raise DataError(self.best, "trainer.resume=false would replace this "
                            "finished run's model; add trainer.overwrite=true to do so, or "
                            "train into another experiment folder (name=...)")
        seed_everything(opts.seed + self.world.rank)
        return TrainState()

    def resume(self, optimizer: torch.optim.Optimizer, scheduler: Plateau,
               device: torch.device) -> TrainState:
        """Load last.pt into the model, optimiser and schedule; return the run's state."""
        try:
            payload = read_payload(self.last, device)
        except DataError as e:
            raise DataError(self.last, f"cannot resume from it: {e.reason}; move it away to "
                            "resume from nothing, or start afresh with trainer.resume=false "
                            "trainer.overwrite=true") from None
        check_resumable(self.last, payload.get("data_order"), self.order)
        try:
            self.model.load_state_dict(payload["model"])
            optimizer.load_state_dict(payload["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise DataError(self.last, f"does not fit this model or optimiser ({e}); resume "
                            "with the settings it was written with, or start afresh with "
                            "trainer.resume=false") from None
        scheduler.load_state_dict(payload["scheduler"])
        state = TrainState.from_payload(payload)
        where = f", step {state.position['step']}" if state.position else ""
        log.info("resumed from %s at epoch %d%s (%s)", self.last, state.epoch + 1, where,
                 f"best dev error {state.best:.2f} %" if math.isfinite(state.best)
                 else "no epoch done yet")
        return state

    def save_last(self, state: TrainState, optimizer: torch.optim.Optimizer,
                  scheduler: Plateau) -> None:
        """Write ``state`` with every process's RNGs to last.pt. The gather is a collective:
        every process calls this; rank 0 writes."""
        state.rng = gather(rng_state())
        if self.world.is_main:
            p = state.to_payload()
            save_checkpoint(self.last, self.model, self.vocab, self.config, epoch=p["epoch"],
                            best=p["best"], history=p["history"],
                            optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(),
                            rng=p["rng"], position=p["position"],
                            global_step=p["global_step"], world_size=self.world.size,
                            data_order=self.order, **self.front_end)

    def save_best(self, epoch: int, dev_error_rate: float, **extra: object) -> None:
        """The model now, as best.pt (rank 0 only)."""
        if self.world.is_main:
            save_checkpoint(self.best, self.model, self.vocab, self.config, epoch=epoch,
                            dev_error_rate=dev_error_rate, **extra, **self.front_end)

    def keep_epoch(self, epoch: int, history: list[dict], count: int) -> None:
        """This epoch's model as epochs/NNN.pt, keeping only the ``count`` epochs of the
        lowest dev error rates (what ``average`` averages; rank 0 only)."""
        if not self.world.is_main:
            return
        folder = self.exp_dir / "epochs"
        folder.mkdir(exist_ok=True)
        keep = {h["epoch"] for h in best_epochs(history, count)}
        if epoch in keep:
            save_checkpoint(folder / f"{epoch:03d}.pt", self.model, self.vocab, self.config,
                            epoch=epoch, **self.front_end)
        for old in folder.glob("*.pt"):
            if old.stem.isdigit() and int(old.stem) not in keep:
                old.unlink()

    def averaged(self, epochs: list[int]) -> dict[str, torch.Tensor]:
        """The mean of the kept models of ``epochs`` (floating tensors; others as the
        first's)."""
        states = [read_payload(self.exp_dir / "epochs" / f"{e:03d}.pt")["model"]
                  for e in epochs]
        return {k: (torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point()
                    else v) for k, v in states[0].items()}

    def save_history(self, history: list[dict]) -> None:
        """The per-epoch records as history.json (rank 0 only)."""
        if self.world.is_main:
            atomic_write_text(self.exp_dir / "history.json", json.dumps(history, indent=1))
