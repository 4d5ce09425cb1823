"""Training a CTC model: typed options (``options``), one optimiser step (``step``), the
run's state and its checkpoints (``state``, ``checkpointer``), stop signals (``signals``) and
the loop that orders them (``loop``); inference lives in ``recog.evaluate``.

The names below are the package's interface. ``fit`` looks up ``ctc_loss`` and ``evaluate``
here on every call, so one substitution of ``recog.train.ctc_loss`` (a loss that records its
batches, say) or ``recog.train.evaluate`` reaches the loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from recog.batching import CTCDataset
from recog.evaluate import evaluate, run_model
from recog.models.ctc import CTCModel
from recog.tokens import Vocabulary
from recog.train import loop
from recog.train.options import (
    BatchTooLarge,
    Diverged,
    Interrupted,
    OptimOptions,
    TrainerOptions,
)
from recog.train.state import TrainState, rng_state, seed_everything, set_rng_state
from recog.train.step import PRECISIONS, Augment, ctc_loss, make_optimizer

__all__ = ["PRECISIONS", "BatchTooLarge", "Diverged", "Interrupted", "OptimOptions",
           "TrainState", "TrainerOptions", "ctc_loss", "evaluate", "fit", "make_optimizer",
           "rng_state", "run_model", "seed_everything", "set_rng_state"]


def fit(model: CTCModel, vocab: Vocabulary, train_set: CTCDataset, dev_set: CTCDataset,
        optim: OptimOptions, trainer: TrainerOptions, exp_dir: str | Path, config: dict,
        normalize: Callable[[Sequence[str]], Sequence[str]] = tuple,
        optimizer: torch.optim.Optimizer | None = None, augment: Augment | None = None,
        front_end: dict | None = None) -> dict:
    """``recog.train.loop.fit`` with this package's ``ctc_loss`` and ``evaluate`` (see the
    module's docstring): train into ``exp_dir``, write best.pt/last.pt, return the history."""
    return loop.fit(model, vocab, train_set, dev_set, optim, trainer, exp_dir, config,
                    normalize, optimizer, augment, loss_fn=ctc_loss, evaluate_fn=evaluate,
                    front_end=front_end)
