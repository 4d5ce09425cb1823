"""Stage 2 and what training and decoding read: a split's feature cache, and its dataset
(features, encoded targets, normalisation) with the bad items set aside."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch

from recog.augment import AugmentOptions
from recog.batching import CTCDataset, normalization
from recog.config import Config
from recog.data.utterance import DataError, Rejections, Utterance
from recog.features.cache import FeatureCache, build_cache
from recog.models.ctc import CTCModel, ctc_min_frames
from recog.stages.corpora import get_task
from recog.stages.prepare import load_split
from recog.tokens import Vocabulary

log = logging.getLogger("recog")


def features(cfg: Config, split: str, utts: list[Utterance] | None = None,
             name: str | None = None, key: dict | None = None) -> FeatureCache:
    """The feature cache of one split (built if its inputs or configuration changed); an
    utterance whose features are bad stops it, unless ``data.skip_bad`` (then it is listed).
    ``utts``, ``name`` and ``key`` give another utterance list (the training copies), its
    cache name and what else enters the cache key."""
    task = get_task(cfg)
    utts = load_split(cfg, split) if utts is None else utts
    cache = build_cache(utts, task.extract, {**task.feature_key, **(key or {})},
                        cfg.data.cache_dir, name or split, progress=cfg.trainer.progress,
                        skip_bad=cfg.data.skip_bad)
    if cache.bad and not cfg.data.skip_bad:  # built earlier with skip_bad
        raise next(iter(cache.bad.values()))
    return cache


def dataset(cfg: Config, split: str, vocab: Vocabulary, model: CTCModel | None = None,
            rejections: Rejections | None = None, max_frames: int | None = None,
            normalize: str = "global", augment: AugmentOptions | None = None,
            warp: float = 1.0) -> tuple[CTCDataset, list[Utterance]]:
    """Cached features and encoded targets of a split, normalised per utterance or per
    speaker if ``normalize`` says so (``global``: by the model itself). Bad items: features
    that could not be computed, an utterance longer than ``max_frames`` (a batch's frame
    budget: it alone would exceed the memory planned per batch), a token outside ``vocab``
    and, with a model, labels that cannot fit their output frames under CTC. With
    ``augment`` asking for copies, the split is replaced by its perturbed copies (training);
    a perturbed copy that does not fit is left out with a warning, not an error. ``warp``
    other than 1: the features with the mel filterbank warped so (test-time VTLN), cached
    apart."""
    rejections = rejections if rejections is not None else Rejections()
    task = get_task(cfg)
    utts = load_split(cfg, split)
    made = task.copies(utts, augment) if augment is not None else None
    if made is not None:  # the training copies replace the split
        utts, name, key = made
        cache = features(cfg, split, utts, f"{split}-{name}", key)
    elif warp != 1.0:
        utts = [replace(u, extra={**u.extra, "vtlp": warp}) for u in utts]
        cache = features(cfg, split, utts, f"{split}-w{warp:g}", {"warp": warp})
    else:
        cache = features(cfg, split)
    dropped = Rejections(skip_bad=True)  # sped-up copies that no longer fit: a warning
    index = vocab.index
    jsonl = Path(cfg.prepare.out) / f"{split}.jsonl"
    keep, targets = [], []
    for i, u in enumerate(utts):
        if i in cache.bad:
            rejections.add(cache.bad[i])
            continue
        if max_frames is not None and cache.lengths[i] > max_frames:
            rejections.add(DataError(
                u.source, f"utterance {u.id} has {int(cache.lengths[i])} feature frames, more "
                f"than a whole batch may hold ({max_frames}): raise the batch_frames option "
                "if memory allows, or split the utterance"))
            continue
        labels = task.targets(u)
        unknown = sorted({t for t in labels if t not in index})
        if unknown:
            rejections.add(DataError(jsonl, f"utterance {u.id} ({u.source}): token(s) "
                                     f"{unknown} not in the model's vocabulary", i + 1))
            continue
        ids = [index[t] for t in labels]
        if model is not None:
            frames = int(model.output_lengths(torch.tensor(int(cache.lengths[i]))))
            if frames < ctc_min_frames(ids):
                sink = dropped if task.resized(u) else rejections
                sink.add(DataError(
                    u.source, f"utterance {u.id}: {frames} output frames cannot hold its "
                    f"{len(ids)} labels under CTC (needs {ctc_min_frames(ids)}); "
                    "lower model.stack"))
                continue
        keep.append(i)
        targets.append(ids)
    if dropped.items:
        log.warning("left out %d perturbed training copies whose labels do not fit "
                    "their frames (first: %s)", len(dropped), dropped.items[0])
    if not keep:
        raise DataError(jsonl, f"no utterance of split {split!r} is usable")
    if len(keep) < len(utts):
        cache, utts = cache.subset(keep), [utts[i] for i in keep]
    return CTCDataset(cache, targets, normalization(normalize, cache, utts)), utts
