"""Datasets over the feature cache and length-bucketed batches (little padding per batch),
split across processes and accumulation steps for distributed training."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from recog.data.utterance import Utterance
from recog.features.cache import FeatureCache


@dataclass(frozen=True)
class GroupNormalization:
    """Mean and standard deviation per group of utterances (each utterance its own group,
    or one group per speaker): utterance i is normalised with row ``group[i]``."""

    group: np.ndarray  # (N,) int
    mean: np.ndarray  # (G, D)
    std: np.ndarray  # (G, D)

    @classmethod
    def of(cls, frames: Sequence[np.ndarray], keys: Sequence[str]) -> GroupNormalization:
        """Statistics of each key's frames pooled (keys: one per utterance)."""
        names = list(dict.fromkeys(keys))
        where = {k: g for g, k in enumerate(names)}
        group = np.array([where[k] for k in keys], dtype=np.int64)
        dim = frames[0].shape[1] if len(frames) else 0
        s = np.zeros((len(names), dim))
        ss, n = np.zeros_like(s), np.zeros(len(names))
        for g, x in zip(group, frames, strict=True):
            x = np.asarray(x, dtype=np.float64)
            s[g] += x.sum(0)
            ss[g] += (x * x).sum(0)
            n[g] += len(x)
        mean = s / np.maximum(n, 1)[:, None]
        std = np.sqrt(np.maximum(ss / np.maximum(n, 1)[:, None] - mean * mean, 1e-10))
        return cls(group, mean.astype(np.float32), np.maximum(std, 1e-5).astype(np.float32))

    def apply(self, i: int, x: np.ndarray) -> np.ndarray:
        g = self.group[i]
        return (x - self.mean[g]) / self.std[g]


NORMALIZATIONS = ("global", "utterance", "speaker")


def normalization(mode: str, cache: FeatureCache, utts: Sequence[Utterance]
                  ) -> GroupNormalization | None:
    """Input CMVN of ``model.normalize``: None for ``global`` (the model applies the
    training set's statistics), else statistics per utterance or per speaker of the split
    (as Kaldi's per-speaker CMVN: a test speaker's own unlabelled frames)."""
    if mode not in NORMALIZATIONS:
        raise ValueError(f"unknown model.normalize {mode!r}; known: {', '.join(NORMALIZATIONS)}")
    if mode == "global":
        return None
    keys = [u.id if mode == "utterance" else u.speaker for u in utts]
    return GroupNormalization.of([cache[i] for i in range(len(cache))], keys)


@dataclass
class CTCDataset:
    """Cached features plus integer targets, aligned by position; ``norm`` normalises each
    utterance's frames by its group (per-utterance or per-speaker CMVN) as batches are made."""

    cache: FeatureCache
    targets: list[list[int]]
    norm: GroupNormalization | None = None

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

    @property
    def padded_frames(self) -> int:
        return int(self.feats.shape[0] * self.feats.shape[1])

    def pin_memory(self) -> Batch:
        """A copy in page-locked memory, so that copies to the GPU can be asynchronous."""
        return Batch(self.indices, self.feats.pin_memory(), self.lengths.pin_memory(),
                     self.targets.pin_memory(), self.target_lengths.pin_memory())


def pad(frames: Sequence[np.ndarray | torch.Tensor], dim: int
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Utterances' (T_i, dim) frames as one zero-padded (B, max T, dim) batch and their
    lengths: the one padding path of training, decoding and transcription."""
    lengths = torch.as_tensor([len(x) for x in frames], dtype=torch.long)
    feats = np.zeros((len(frames), int(lengths.max()) if len(frames) else 0, dim), np.float32)
    for row, x in enumerate(frames):
        feats[row, : len(x)] = x.numpy() if isinstance(x, torch.Tensor) else x
    return torch.from_numpy(feats), lengths


def collate(dataset: CTCDataset, indices: Sequence[int]) -> Batch:
    """Pad the features of ``indices`` into one batch and concatenate their targets."""
    frames = [dataset.cache[i] if dataset.norm is None else
              dataset.norm.apply(i, dataset.cache[i]) for i in indices]
    feats, lengths = pad(frames, dataset.cache.dim)
    targets = [dataset.targets[i] for i in indices]
    return Batch(
        list(indices), feats, lengths,
        torch.as_tensor([t for seq in targets for t in seq], dtype=torch.long),
        torch.as_tensor([len(t) for t in targets], dtype=torch.long),
    )


def bucket_batches(lengths: Sequence[int], max_frames: int, max_utts: int | None = None,
                   shuffle: bool = False, seed: int = 0) -> list[list[int]]:
    """Group utterances of similar length so that each batch holds at most ``max_frames``
    padded frames (and ``max_utts`` utterances, if given: training caps them, inference
    need not, and batched beam search gains from wide batches); with ``shuffle``, ties are
    broken and batches ordered at random."""
    lengths = np.asarray(lengths)
    rng = np.random.default_rng(seed)
    jitter = rng.random(len(lengths)) if shuffle else np.zeros(len(lengths))
    order = np.lexsort((jitter, lengths))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order.tolist():
        longest = int(lengths[i])  # ascending order: the newcomer is the longest
        full = max_utts is not None and len(current) >= max_utts
        if current and (longest * (len(current) + 1) > max_frames or full):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches


def shard(batch: Sequence[int], parts: int, part: int) -> list[int]:
    """Part ``part`` of ``parts`` of a length-sorted batch: every ``parts``-th utterance, so
    that all parts have similar lengths and sizes and together hold the batch exactly once."""
    return list(batch[part::parts])


def rank_batches(batches: Sequence[Sequence[int]], rank: int, world_size: int,
                 accumulate: int = 1) -> list[list[list[int]]]:
    """This rank's micro-batches of every optimiser step: step ``s``'s batch is split into
    ``world_size * accumulate`` parts and rank ``r`` gets parts ``r, r + world_size, ...``.
    The union over ranks and micro-batches of one step is that step's batch (a part may be
    empty when the batch has fewer utterances than parts)."""
    parts = world_size * accumulate
    return [[shard(b, parts, a * world_size + rank) for a in range(accumulate)]
            for b in batches]


def iterate(dataset: CTCDataset, batches: Sequence[Sequence[int]]) -> Iterator[Batch]:
    for indices in batches:
        yield collate(dataset, indices)


class _Collated(torch.utils.data.Dataset):
    """Item i is the collated batch ``batches[i]`` (for DataLoader workers)."""

    def __init__(self, dataset: CTCDataset, batches: Sequence[Sequence[int]]):
        self.dataset, self.batches = dataset, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> Batch:
        return collate(self.dataset, self.batches[i])


def load(dataset: CTCDataset, batches: Sequence[Sequence[int]], workers: int = 0,
         pin_memory: bool = False) -> Iterator[Batch]:
    """Collated batches in order: in this process, or prefetched by ``workers`` DataLoader
    processes (which read the memory-mapped cache themselves); pinned for a GPU if asked."""
    if workers <= 0:
        for batch in iterate(dataset, batches):
            yield batch.pin_memory() if pin_memory else batch
        return
    loader = torch.utils.data.DataLoader(
        _Collated(dataset, batches), batch_size=None, shuffle=False, num_workers=workers,
        pin_memory=pin_memory, prefetch_factor=4,
        generator=torch.Generator().manual_seed(0))  # leaves the global RNG stream alone
    yield from loader
