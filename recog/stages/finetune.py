"""Fine-tuning as a stage: the checkpoint's front end and network shape adopted into the
config, its output layer transferred to the corpus's tokens, then the training stage (the
model-side pieces, transfer and freezing, are ``recog.finetune``'s)."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from dataclasses import asdict, replace
from pathlib import Path

import torch

from recog.config import Config
from recog.data.utterance import DataError
from recog.features.cache import FeatureCache, feature_stats
from recog.finetune import (
    FinetuneOptions,
    build_optimizer,
    freeze_layers,
    token_kind,
    transfer_output,
    transfer_rule,
)
from recog.models.checkpoint import load_checkpoint
from recog.models.ctc import CTCModel, ModelOptions
from recog.options import from_dict
from recog.stages.corpora import get_task
from recog.stages.train import train
from recog.tasks import checkpoint_front_end
from recog.tokens import Vocabulary

log = logging.getLogger("recog.finetune")


def apply_checkpoint_setup(cfg: Config, payload: dict, checkpoint: str | Path,
                           overridden: Collection[str] = ()) -> Config:
    """``cfg`` with the checkpoint's front-end options and network shape. A feature option
    that the user set (``overridden`` holds dotted keys, or ``features`` for the whole group)
    to a value other than the checkpoint's is an error naming the key."""
    record = checkpoint_front_end(payload, checkpoint)
    front_end = get_task(cfg).front_end  # the features group of the corpus's modality
    model = ModelOptions.from_dict(payload["model_options"])
    if front_end in record and not hasattr(cfg.features, front_end):
        return replace(cfg, model=model)  # a modality whose options are not in the config
    if front_end not in record:
        raise DataError(checkpoint, f"checkpoint holds no features.{front_end} options (it was "
                        "not trained on this modality, or by a recog-train that saved them)")
    current = getattr(cfg.features, front_end)
    wanted = from_dict(type(current), record[front_end], f"features.{front_end}.")
    for key, value in vars(wanted).items():
        full = f"features.{front_end}.{key}"
        mine = getattr(current, key)
        if mine != value and ("features" in overridden or full in overridden):
            raise DataError(checkpoint, f"{full}: the checkpoint was trained with {value!r}, "
                            f"the configuration asks for {mine!r}; a trained model keeps "
                            "its front end (drop the override)")
        if mine != value:
            log.info("%s=%r: the checkpoint's (the configuration has %r)", full, value, mine)
    features = replace(cfg.features, **{front_end: wanted})
    return replace(cfg, features=features, model=model)


def finetune(cfg: Config, opts: FinetuneOptions, overridden: Collection[str] = ()) -> dict:
    """Fine-tune ``opts.checkpoint`` on the corpus of ``cfg`` into ``cfg.exp_dir``; returns
    what ``recog.stages.train.train`` returns plus the token transfer."""
    if not opts.checkpoint:
        raise ValueError("finetune.checkpoint is required (the best.pt to start from)")
    base, old_vocab, payload = load_checkpoint(opts.checkpoint)
    normalize = cfg.model.normalize  # the one model option fine-tuning may change
    cfg = apply_checkpoint_setup(cfg, payload, opts.checkpoint, overridden)
    cfg = replace(cfg, model=replace(cfg.model, normalize=normalize))
    old_kind = checkpoint_front_end(payload, opts.checkpoint)["token_kind"]
    new_kind = token_kind(cfg.corpus)
    rule = transfer_rule(opts.transfer, old_kind, new_kind)
    transfer: dict[str, object] = {}

    def init(vocab: Vocabulary, train_cache: FeatureCache
             ) -> tuple[CTCModel, torch.optim.Optimizer]:
        if train_cache.dim != base.input_dim:
            raise DataError(opts.checkpoint, f"the checkpoint takes {base.input_dim}-dim "
                            f"features, the corpus gives {train_cache.dim}")
        model, moved = transfer_output(base, old_vocab, vocab, cfg.trainer.seed, rule)
        transfer.update(moved, rule=rule)
        was = model.options.normalize
        if normalize != was:
            if opts.freeze_front_end:
                raise ValueError(f"model.normalize={normalize}: the checkpoint normalises "
                                 f"{was!r}; changing it needs finetune.freeze_front_end=false")
            log.warning("model.normalize=%s: the checkpoint normalised %r; fine-tuning "
                        "changes it (model.normalize=%s keeps it)", normalize, was, was)
            model.options = replace(model.options, normalize=normalize)
        if normalize == "global" and not opts.freeze_front_end:
            mean, std = feature_stats(train_cache)
            model.set_normalization(torch.from_numpy(mean), torch.from_numpy(std))
        elif normalize != was:  # the data arrive normalised by group: identity inside
            model.set_normalization(torch.zeros(model.input_dim), torch.ones(model.input_dim))
        frozen = freeze_layers(model, opts.freeze_layers)
        log.info("fine-tuning %s: output rows transferred %s (finetune.transfer=%s, %s "
                 "tokens to %s): %d tokens kept, %d new %s, %d dropped %s; %d tensors "
                 "frozen", opts.checkpoint, rule, opts.transfer, old_kind, new_kind,
                 len(moved["kept"]), len(moved["new"]), moved["new"], len(moved["dropped"]),
                 moved["dropped"], len(frozen))
        return model, build_optimizer(model, cfg.optim, opts)

    config = json.loads(json.dumps(asdict(cfg)))  # plain lists and dicts, as YAML has them
    config["finetune"] = vars(opts).copy()
    result = train(cfg, config, init)
    result["transfer"] = transfer
    result["config"] = config
    return result
