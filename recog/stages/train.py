"""Stage 3: train a model on the train split, choosing it on the dev split."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path

import torch

from recog import distributed
from recog.atomic import atomic_write_text
from recog.augment import SpecAugment
from recog.config import Config
from recog.data.utterance import Rejections
from recog.features.cache import FeatureCache, feature_stats
from recog.lockfile import exp_lock
from recog.models.ctc import CTCModel, ModelOptions
from recog.stages.corpora import get_task
from recog.stages.features import dataset, features
from recog.stages.prepare import load_split
from recog.tasks import Task, front_end_record
from recog.threads import set_threads
from recog.tokens import Vocabulary
from recog.train import fit

log = logging.getLogger("recog")


# Fine-tuning's start: (vocabulary, training features) -> model and optimiser (None: default)
ModelInit = Callable[[Vocabulary, FeatureCache], tuple[CTCModel, "torch.optim.Optimizer | None"]]


def model_options(cfg: Config, task: Task) -> ModelOptions:
    """The configured network, with what is left to the features filled in: the ConvLSTM's
    input maps (``model.convlstm.maps=0``) are the features' own blocks."""
    options = cfg.model
    if options.convlstm.maps == 0:
        options = replace(options, convlstm=replace(options.convlstm, maps=task.feature_blocks))
    return options


def train(cfg: Config, config_dict: dict, init: ModelInit | None = None) -> dict:
    """Train a model on the corpus's train split, selecting on its dev split; ``init`` gives
    the starting model and optimiser instead of a fresh model (fine-tuning). Under torchrun
    every process of the group runs this, rank 0 holding the lock and building the caches."""
    main = distributed.env_world().is_main
    with exp_lock(cfg.exp_dir, "recog-train") if main else nullcontext():
        distributed.init(cfg.trainer.device, cfg.trainer.backend, cfg.trainer.dist_timeout_s)
        try:
            return _train(cfg, config_dict, init)
        finally:
            distributed.shutdown()


def _train(cfg: Config, config_dict: dict, init: ModelInit | None) -> dict:
    task = get_task(cfg)
    exp_dir = Path(cfg.exp_dir)
    cfg.augment.check()  # before any feature is computed
    set_threads(cfg.trainer.num_threads)
    torch.manual_seed(cfg.trainer.seed)
    train_split, dev_split = cfg.corpus.train_split, cfg.corpus.dev_split
    vocab = task.vocabulary(load_split(cfg, train_split))
    with distributed.main_first():  # one process builds the caches, the others read them
        train_cache = features(cfg, train_split)
        optimizer = None
        if init is None:
            model = CTCModel(train_cache.dim, len(vocab), model_options(cfg, task))
            if cfg.model.normalize == "global":  # else the data arrive normalised
                mean, std = feature_stats(train_cache)
                model.set_normalization(torch.from_numpy(mean), torch.from_numpy(std))
        else:
            model, optimizer = init(vocab, train_cache)
        rejections = Rejections(cfg.data.skip_bad)
        budget, norm = cfg.trainer.batch_frames, model.options.normalize
        train_set, _ = dataset(cfg, train_split, vocab, model, rejections, budget, norm,
                               cfg.augment)
        dev_set, _ = dataset(cfg, dev_split, vocab, model, rejections, budget, norm)
    skipped = [e.as_dict() for e in rejections.items]
    for e in rejections.items:
        log.warning("skipped: %s", e)
    if skipped:
        log.warning("skipped %d bad item(s) (data.skip_bad=true); listed in %s",
                    len(skipped), exp_dir / "skipped.json")
    atomic_write_text(exp_dir / "skipped.json", json.dumps(skipped, indent=1))
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model: %s, %d parameters, %d tokens; %s %d utts (%d frames), %s %d utts",
             asdict(cfg.model), n_params, len(vocab), train_split, len(train_set),
             int(train_set.lengths.sum()), dev_split, len(dev_set))
    spec = (SpecAugment(cfg.augment, task.feature_blocks, model.feat_mean)
            if cfg.augment.spec_augment else None)
    result = fit(model, vocab, train_set, dev_set, cfg.optim, cfg.trainer, exp_dir,
                 config_dict, task.metrics[task.selection], optimizer, spec,
                 front_end=front_end_record(task))
    result["skipped"] = skipped
    return result
