"""The feature cache: one memory-mappable file per split and front-end configuration.

``<dir>/<split>-<key>.f32`` holds the frames of all utterances back to back (float32,
row-major) and ``<dir>/<split>-<key>.json`` their ids, offsets and lengths. The key hashes
the front-end options and every input's path, size and modification time, so a cache is
rebuilt exactly when its inputs or its configuration change. Both files are written under
temporary names, fsynced and renamed, the index last, so a half-built cache is never read: a
build killed midway leaves no index (its temporary file is removed by the next build), and
an index whose frame file is missing or of the wrong size is rebuilt.

Opening a cache checks it whole before anything reads it: the index's offsets must lay the
utterances back to back, and the frame file must match the SHA-256 the index keeps of it and
hold finite numbers only; a cache that fails is an error naming the file (``build_cache``
rebuilds it instead).

An utterance whose features cannot be computed, are empty or hold NaN/inf is a bad item:
an error naming its file, or with ``skip_bad`` kept in the cache with no frames and listed
in the index's ``bad`` entries, which every later reader of the cache sees again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from recog.atomic import atomic_open, atomic_write_text, remove_stale_temps
from recog.data.utterance import DataError, Utterance
from recog.progress import Progress

log = logging.getLogger("recog.features")

CACHE_VERSION = 2  # 2: the index keeps the frame file's SHA-256
_CHUNK = 1 << 16  # frames per block when the whole file is scanned


def cache_key(utterances: Sequence[Utterance], options: dict) -> str:
    """A hash of the front-end options and of every input file's identity."""
    h = hashlib.sha1(json.dumps({"v": CACHE_VERSION, "opts": options}, sort_keys=True).encode())
    for u in utterances:
        try:
            st = os.stat(u.source)
            ident = f"{u.id}\t{u.source}\t{st.st_size}\t{st.st_mtime_ns}\n"
            if u.offset or u.duration is not None:  # a segment of a longer file
                ident += f"{u.offset}\t{u.duration}\n"
        except OSError:
            ident = f"{u.id}\t{u.source}\t-\n"
        h.update(ident.encode())
    return h.hexdigest()[:16]


class FeatureCache:
    """Read access to a built cache: ``cache[i]`` is utterance i's (T, D) frames."""

    def __init__(self, index_path: str | Path):
        self.index_path = Path(index_path)
        try:
            index = json.loads(self.index_path.read_text())
            self.ids: list[str] = index["ids"]
            self.offsets = np.asarray(index["offsets"], dtype=np.int64).reshape(-1)
            self.lengths = np.asarray(index["lengths"], dtype=np.int64).reshape(-1)
            self.dim: int = index["dim"]
            self.options: dict = index["options"]
            self.sha256: str = index["sha256"]
            self.bad: dict[int, DataError] = {
                int(b["index"]): DataError(b["path"], b["reason"], b["line"])
                for b in index["bad"]}
            if not (isinstance(self.ids, list) and all(isinstance(i, str) for i in self.ids)
                    and isinstance(self.dim, int) and isinstance(self.sha256, str)):
                raise TypeError("ids must be strings, dim an integer, sha256 a string")
        except (OSError, ValueError, KeyError, TypeError, RecursionError, OverflowError) as e:
            raise DataError(self.index_path, f"unreadable feature-cache index ({type(e).__name__}"
                            f": {e}); delete it and rerun to rebuild the cache") from None
        self._check_layout()
        total = int(self.lengths.sum())
        data_path = self.index_path.with_suffix(".f32")
        size = data_path.stat().st_size if data_path.is_file() else -1
        if size != total * self.dim * 4:
            raise DataError(data_path, f"feature cache holds {max(size, 0)} bytes, its index "
                            f"{self.index_path.name} describes {total * self.dim * 4}: an "
                            "interrupted or damaged build")
        self.data = (np.memmap(data_path, dtype=np.float32, mode="r", shape=(total, self.dim))
                     if total else np.zeros((0, self.dim), np.float32))
        self._check_frames(data_path)

    def _check_layout(self) -> None:
        """The index describes utterances back to back from frame 0, as the build writes
        them: anything else (zeroed or overlapping offsets) would read wrong frames."""
        def bad(what: str) -> DataError:
            return DataError(self.index_path, f"feature-cache index: {what}; delete it and "
                             "rerun to rebuild the cache")
        if not (len(self.ids) == len(self.offsets) == len(self.lengths)):
            raise bad("ids, offsets and lengths differ in number")
        if (self.lengths < 0).any() or self.dim < 0:
            raise bad("a negative length or dimension")
        expected = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        wrong = np.flatnonzero(self.offsets != expected[:len(self.offsets)])
        if len(wrong):
            i = int(wrong[0])
            raise bad(f"utterance {self.ids[i]} starts at frame {int(self.offsets[i])}, not "
                      f"{int(expected[i])} where the one before it ends")
        if len(set(self.ids)) != len(self.ids):
            raise bad("an utterance id appears twice")
        if any(not 0 <= i < len(self.ids) for i in self.bad):
            raise bad("a bad-item entry points past the utterances")

    def _check_frames(self, data_path: Path) -> None:
        """The frame file is the one the index was written with (SHA-256) and holds finite
        numbers only; one pass over the file, in blocks."""
        h = hashlib.sha256()
        for start in range(0, len(self.data), _CHUNK):
            block = np.ascontiguousarray(self.data[start : start + _CHUNK])
            h.update(block.tobytes())
            rows = np.isfinite(block).all(axis=1)
            if not rows.all():
                frame = start + int(np.flatnonzero(~rows)[0])
                utt = self.ids[int(np.searchsorted(self.offsets + self.lengths, frame,
                                                   side="right"))]
                raise DataError(data_path, f"feature cache holds NaN or inf at frame {frame} "
                                f"(utterance {utt}); delete it and rerun to rebuild the cache")
        if h.hexdigest() != self.sha256:
            raise DataError(data_path, "feature cache does not match the SHA-256 its index "
                            f"{self.index_path.name} keeps (damaged or edited after it was "
                            "built); delete it and rerun to rebuild the cache")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> np.ndarray:
        o = self.offsets[i]
        return self.data[o : o + self.lengths[i]]

    def subset(self, keep: Sequence[int]) -> FeatureCache:
        """A view of the utterances at positions ``keep`` (same file, no copy)."""
        sub = copy.copy(self)
        sub.ids = [self.ids[i] for i in keep]
        sub.offsets, sub.lengths = self.offsets[list(keep)], self.lengths[list(keep)]
        sub.bad = {new: self.bad[old] for new, old in enumerate(keep) if old in self.bad}
        return sub


def build_cache(
    utterances: Sequence[Utterance],
    extract: Callable[[Utterance], torch.Tensor],
    options: dict,
    folder: str | Path,
    split: str,
    progress: bool = True,
    skip_bad: bool = False,
) -> FeatureCache:
    """Return the cache of ``utterances`` under ``folder``, computing it only if absent (or
    damaged). A bad utterance stops the build naming its file, unless ``skip_bad``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index_path = folder / f"{split}-{cache_key(utterances, options)}.json"
    data_path = index_path.with_suffix(".f32")
    for tmp in remove_stale_temps(folder):
        log.warning("removed %s, left by an interrupted feature-cache build", tmp)
    if index_path.is_file():
        try:
            return FeatureCache(index_path)
        except DataError as e:
            log.warning("rebuilding the feature cache: %s", e)
            index_path.unlink(missing_ok=True)
    offsets, lengths, bad, dim, offset = [], [], [], None, 0
    bar = Progress(len(utterances), f"features {split}", progress)
    digest = hashlib.sha256()
    with atomic_open(data_path, "wb") as f:
        for n, u in enumerate(utterances, 1):
            try:
                feats = _checked_features(u, extract, dim)
            except DataError as e:
                if not skip_bad:
                    raise
                bad.append({"index": n - 1, **e.as_dict()})
                feats = np.zeros((0, dim or 0), np.float32)
            dim = dim if dim is not None or not len(feats) else feats.shape[1]
            frames = feats.tobytes()
            f.write(frames)
            digest.update(frames)
            offsets.append(offset)
            lengths.append(len(feats))
            offset += len(feats)
            bar.update(n)
    index = {"ids": [u.id for u in utterances], "offsets": offsets, "lengths": lengths,
             "dim": dim or 0, "options": options, "bad": bad, "sha256": digest.hexdigest()}
    atomic_write_text(index_path, json.dumps(index))
    return FeatureCache(index_path)


def _checked_features(u: Utterance, extract: Callable[[Utterance], torch.Tensor],
                      dim: int | None) -> np.ndarray:
    """The (T, D) float32 features of ``u``; any failure is a DataError naming its file."""
    try:
        feats = extract(u).to(torch.float32).contiguous().numpy()
    except DataError:
        raise
    except (ValueError, RuntimeError, IndexError, ZeroDivisionError, FloatingPointError,
            AssertionError) as e:
        raise DataError(u.source, f"utterance {u.id}: features cannot be computed "
                        f"({type(e).__name__}: {e})") from None
    if feats.ndim != 2 or len(feats) == 0:
        raise DataError(u.source, f"utterance {u.id}: no feature frames (too short?)")
    if dim is not None and feats.shape[1] != dim:
        raise DataError(u.source, f"utterance {u.id}: {feats.shape[1]} feature dimensions, "
                        f"the others have {dim}")
    finite = np.isfinite(feats).all(axis=1)
    if not finite.all():
        raise DataError(u.source, f"utterance {u.id}: features hold NaN or inf (first at "
                        f"frame {int(np.flatnonzero(~finite)[0])} of {len(feats)})")
    return feats


def feature_stats(cache: FeatureCache, chunk: int = _CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation over every frame of ``cache``."""
    total = len(cache.data)
    if total == 0:
        raise DataError(cache.index_path, "no frames to compute statistics from")
    s = np.zeros(cache.dim, np.float64)
    ss = np.zeros(cache.dim, np.float64)
    for start in range(0, total, chunk):
        block = np.asarray(cache.data[start : start + chunk], dtype=np.float64)
        s += block.sum(0)
        ss += (block * block).sum(0)
    mean = s / total
    std = np.sqrt(np.maximum(ss / total - mean * mean, 1e-10))
    return mean.astype(np.float32), std.astype(np.float32)
