"""A tiny training run for the DDP and resume tests, in a process of its own (the process
group comes from torchrun's environment variables when they are set).

``python -m tests.train_worker DATA EXP [trainer.KEY=V] [optim.KEY=V] [model.dropout=P]
[slow=SECONDS] [specaug=1]`` trains on
the random corpus ``tiny_corpus(DATA)`` into EXP and writes ``EXP/seen-<rank>.json``: the
utterance indices of every training micro-batch it ran, in order.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from recog import distributed, train
from recog.augment import AugmentOptions, SpecAugment
from recog.batching import CTCDataset
from recog.data.utterance import Utterance
from recog.features.cache import build_cache
from recog.models.ctc import CTCModel, ModelOptions
from recog.tokens import Vocabulary

VOCAB = Vocabulary.from_symbols(["a", "b", "c", "d", "e"])
DIM = 4


def tiny_corpus(folder: Path, n_train: int = 24, n_dev: int = 6) -> tuple[CTCDataset,
                                                                          CTCDataset]:
    """Random features (10-29 frames) and labels (2-5 tokens), the same for every caller."""
    sets = []
    for split, n, seed in (("train", n_train, 1), ("dev", n_dev, 2)):
        rng = np.random.default_rng(seed)
        lengths = rng.integers(10, 30, n)
        utts = [Utterance(f"{split}{i:03d}", "spk", f"{folder}/{split}{i:03d}", ("a",))
                for i in range(n)]
        feats = {u.id: torch.from_numpy(rng.standard_normal((int(t), DIM)).astype(np.float32))
                 for u, t in zip(utts, lengths, strict=True)}
        cache = build_cache(utts, lambda u, f=feats: f[u.id], {"tiny": n}, folder, split,
                            False)
        targets = [rng.integers(1, len(VOCAB), rng.integers(2, 6)).tolist() for _ in range(n)]
        sets.append(CTCDataset(cache, targets))
    return sets[0], sets[1]


def _options(cls: type, base: dict, overrides: dict[str, str]) -> object:
    """``cls(**base)`` with ``overrides`` (strings) converted to each field's type."""
    types = {f.name: f.type for f in fields(cls)}
    for key, value in overrides.items():
        kind = types[key]
        base[key] = (value == "true" if kind in (bool, "bool")
                     else float(value) if kind in (float, "float")
                     else int(value) if kind in (int, "int") else value)
    return cls(**base)


def run(data: Path, exp: Path, overrides: dict[str, str], slow: float = 0.0,
        spec_augment: bool = False) -> dict:
    """Build the tiny model and fit it (in this process's place of the process group);
    ``overrides`` are ``trainer.*``, ``optim.*`` and ``model.dropout`` values; with
    ``spec_augment`` every training batch is masked (recog.augment.SpecAugment)."""
    torch.set_num_threads(1)
    groups: dict[str, dict[str, str]] = {"trainer": {}, "optim": {}, "model": {}}
    for key, value in overrides.items():
        group, name = key.split(".", 1)
        groups[group][name] = value
    opts = _options(train.TrainerOptions, {
        "epochs": 2, "early_stop": 10, "batch_frames": 400, "max_batch_utts": 4,
        "progress": False, "checkpoint_every": 0}, groups["trainer"])
    optim = _options(train.OptimOptions, {"lr": 0.01}, groups["optim"])
    dropout = float(groups["model"].get("dropout", 0.1))
    world = distributed.init(opts.device, opts.backend, opts.dist_timeout_s)
    try:
        train_set, dev_set = tiny_corpus(data)
        torch.manual_seed(0)
        model = CTCModel(DIM, len(VOCAB), ModelOptions(hidden=8, layers=2, dropout=dropout))
        seen: list[list[int]] = []
        loss_fn = train.ctc_loss

        def recording_loss(net, batch, device, precision="fp32"):  # noqa: ANN001, ANN202
            seen.append(list(batch.indices))
            if slow:
                time.sleep(slow)
            return loss_fn(net, batch, device, precision)

        train.ctc_loss = recording_loss
        exp.mkdir(parents=True, exist_ok=True)
        try:
            augment = SpecAugment(AugmentOptions(spec_augment=True, freq_width=2,
                                                 time_width=4), 1, torch.zeros(DIM))
            return train.fit(model, VOCAB, train_set, dev_set, optim, opts, exp,
                             {"tiny": True}, augment=augment if spec_augment else None)
        finally:
            train.ctc_loss = loss_fn
            (exp / f"seen-{world.rank}.json").write_text(json.dumps(seen))
    finally:
        distributed.shutdown()


def main(argv: list[str]) -> None:
    data, exp, *rest = argv
    overrides = dict(a.split("=", 1) for a in rest)
    slow = float(overrides.pop("slow", 0.0))
    spec = overrides.pop("specaug", "0") == "1"
    try:
        run(Path(data), Path(exp), overrides, slow, spec)
    except (train.Interrupted, distributed.DistributedError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(128 + e.signum if isinstance(e, train.Interrupted) else 1)


if __name__ == "__main__":
    main(sys.argv[1:])
