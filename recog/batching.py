"""Datasets over the feature cache and length-bucketed batches (little padding per batch)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from recog.features.cache import FeatureCache


@dataclass
class CTCDataset:
    """Cached features plus integer targets, aligned by position."""

    cache: FeatureCache
    targets: list[list[int]]

    def __post_init__(self) -> None:
        if len(self.targets) != len(self.cache):
            raise ValueError("one target sequence per cached utterance")

    def __len__(self) -> int:
        return len(self.cache)

    @property
    def ids(self) -> list[str]:
        return self.cache.ids

    @property
    def lengths(self) -> np.ndarray:
        return self.cache.lengths


@dataclass
class Batch:
    indices: list[int]
    feats: torch.Tensor  # (B, T, D), zero-padded
    lengths: torch.Tensor  # (B,)
    targets: torch.Tensor  # (sum of target lengths,)
    target_lengths: torch.Tensor  # (B,)

    @property
    def frames(self) -> int:
        return int(self.lengths.sum())


def collate(dataset: CTCDataset, indices: Sequence[int]) -> Batch:
    """Pad the features of ``indices`` into one batch and concatenate their targets."""
    lengths = torch.as_tensor(dataset.lengths[list(indices)], dtype=torch.long)
    feats = np.zeros((len(indices), int(lengths.max()), dataset.cache.dim), np.float32)
    for row, i in enumerate(indices):
        feats[row, : lengths[row]] = dataset.cache[i]
    targets = [dataset.targets[i] for i in indices]
    return Batch(
        list(indices), torch.from_numpy(feats), lengths,
        torch.as_tensor([t for seq in targets for t in seq], dtype=torch.long),
        torch.as_tensor([len(t) for t in targets], dtype=torch.long),
    )


def bucket_batches(lengths: Sequence[int], max_frames: int, max_utts: int = 64,
                   shuffle: bool = False, seed: int = 0) -> list[list[int]]:
    """Group utterances of similar length so that each batch holds at most ``max_frames``
    padded frames; with ``shuffle``, ties are broken and batches ordered at random."""
    lengths = np.asarray(lengths)
    rng = np.random.default_rng(seed)
    jitter = rng.random(len(lengths)) if shuffle else np.zeros(len(lengths))
    order = np.lexsort((jitter, lengths))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order.tolist():
        longest = int(lengths[i])  # ascending order: the newcomer is the longest
        if current and (longest * (len(current) + 1) > max_frames or len(current) >= max_utts):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches


def iterate(dataset: CTCDataset, batches: Sequence[Sequence[int]]) -> Iterator[Batch]:
    for indices in batches:
        yield collate(dataset, indices)
