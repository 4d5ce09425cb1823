"""Recognition from Python with nothing but a checkpoint: load it once, then recognise ink
strokes, audio samples or files, one item per call, from any number of threads.

This is ``recog-transcribe`` without the files: the checkpoint is loaded by
``recog.transcribe.Transcriber`` and every item goes through its decoding and its CTC
alignment, so a result here is what ``recog-transcribe --json`` prints for the same input.
In-memory items get the front end the checkpoint names (``audio_features`` /
``pen_features``) and the same input limits as files (``recog.data.limits``).

    >>> from recog.inference import Recognizer
    >>> rec = Recognizer.load("exp/iam_ondb/baseline/best.pt")
    >>> r = rec.ink([[[10, 20, 0.0], [12, 25, 0.01]], [[30, 20, 0.2], [30, 28, 0.21]]])
    >>> r.text, [t["token"] for t in r.times]
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from recog.data.limits import check_audio, check_points
from recog.data.utterance import DataError
from recog.features.audio import audio_features
from recog.features.pen import PenFeatureOptions, feature_points, pen_features
from recog.transcribe import TranscribeOptions, Transcriber, decode_options

INK_SOURCE = "<ink>"  # what an error about in-memory ink names instead of a file
AUDIO_SOURCE = "<audio>"


@dataclass(frozen=True, repr=False)
class Ink:
    """A line of ink: strokes of (x, y, t) points, x right, y down, in writing order."""

    strokes: tuple[np.ndarray, ...]

    def __repr__(self) -> str:  # short: the Transcriber puts str(item) in its "file" field
        return f"{INK_SOURCE[:-1]} {len(self.strokes)} strokes>"

    @classmethod
    def of(cls, strokes: Sequence[Sequence[Sequence[float]]], source: str = INK_SOURCE
           ) -> Ink:
        """Ink from nested lists ``[[[x, y, t], ...], ...]`` (``t`` in seconds, optional:
        100 points/s without it, as in the JSON stroke files); a stroke that is not a list
        of 2 or 3 numbers, a coordinate that is not finite or a time that goes back is a
        ``DataError`` naming the stroke and point."""
        if not isinstance(strokes, Sequence) or isinstance(strokes, str) or not strokes:
            raise DataError(source, "expected a non-empty list of strokes")
        out: list[np.ndarray] = []
        total = 0
        for k, stroke in enumerate(strokes):
            try:
                a = np.asarray(stroke, dtype=np.float64)
            except (TypeError, ValueError):
                a = np.zeros((0, 0))
            if a.ndim != 2 or len(a) == 0 or a.shape[1] not in (2, 3):
                raise DataError(source, f"stroke {k} must be a non-empty list of [x, y] or "
                                "[x, y, t]")
            if a.shape[1] == 2:
                a = np.column_stack([a, (total + np.arange(len(a))) / 100.0])
            bad = np.flatnonzero(~np.isfinite(a).all(axis=1))
            if len(bad):
                raise DataError(source, f"stroke {k}, point {int(bad[0])}: a coordinate or "
                                "time that is not a finite number")
            previous = out[-1][-1, 2] if out else -np.inf
            back = np.flatnonzero(np.diff(np.concatenate([[previous], a[:, 2]])) < 0)
            if len(back):
                raise DataError(source, f"stroke {k}, point {int(back[0])}: time goes back; "
                                "give points and strokes in writing order")
            total += len(a)
            check_points(source, total)
            out.append(a)
        return cls(tuple(out))


@dataclass(frozen=True, repr=False)
class Audio:
    """Mono samples in [-1, 1] at ``rate`` Hz."""

    samples: np.ndarray
    rate: int

    def __repr__(self) -> str:
        return f"{AUDIO_SOURCE[:-1]} {len(self.samples)} samples at {self.rate} Hz>"


@dataclass
class Recognition:
    """One item's result, as ``recog-transcribe --json`` gives it: ``tokens``, ``text``,
    ``score`` (with its ``acoustic`` and ``lm`` parts), ``times`` (per token: output frames
    [start, end), seconds for speech, and for ink ``ink``: the [stroke, first point, last
    point] spans of the input from the token's first frame to the next token's) and
    ``nbest``; ``posteriors`` (per output frame, each token's probability, blank first)
    when asked for."""

    tokens: list[str]
    text: str
    score: float
    acoustic: float
    lm: float
    times: list[dict]
    nbest: list[dict]
    posteriors: list[list[float]] | None = field(default=None)

    def as_dict(self) -> dict:
        return asdict(self)


class _Items(Transcriber):
    """The Transcriber with in-memory items besides files (its decoding, untouched)."""

    last_ink_features: torch.Tensor | None = None  # of the last Ink item (for its spans)

    def features(self, item: Ink | Audio | str | Path, warp: float = 1.0  # type: ignore[override]
                 ) -> torch.Tensor:
        ink = self.task.modality == "ink"
        if isinstance(item, Ink):
            if not ink:
                raise DataError(INK_SOURCE, "the model recognises speech, not ink")
            try:
                self.last_ink_features = pen_features(item.strokes, self.task.features)
                return self.last_ink_features
            except ValueError as e:
                raise DataError(INK_SOURCE, str(e)) from None
        if isinstance(item, Audio):
            if ink:
                raise DataError(AUDIO_SOURCE, "the model recognises ink, not speech")
            samples = np.asarray(item.samples, dtype=np.float32).reshape(-1)
            if samples.size == 0:
                raise DataError(AUDIO_SOURCE, "audio holds no samples")
            check_audio(AUDIO_SOURCE, int(item.rate), samples.size)
            if not np.isfinite(samples).all():
                raise DataError(AUDIO_SOURCE, "audio holds a non-finite sample (NaN or inf)")
            try:
                return audio_features(torch.from_numpy(samples), int(item.rate),
                                      self.task.features, warp)  # type: ignore[attr-defined]
            except ValueError as e:
                raise DataError(AUDIO_SOURCE, str(e)) from None
        return super().features(item, warp)


class Recognizer:
    """A checkpoint loaded once; ``ink``, ``audio`` and ``file`` recognise one item each.
    Calls are serialised by a lock (one model, one forward pass at a time), so a server may
    call one Recognizer from many threads."""

    def __init__(self, transcriber: Transcriber, name: str = "model"):
        self._t = _Items(transcriber.model, transcriber.vocab, transcriber.task,
                         transcriber.opts, transcriber.network)
        self.name = name
        self._lock = threading.RLock()

    @classmethod
    def load(cls, checkpoint: str | Path, beam: int | None = None, device: str = "cpu",
             **setup: object) -> Recognizer:
        """Load ``checkpoint``: greedy decoding, or beam search ``beam`` wide (with the
        ``decode_options`` ``setup``: lm, lm_weight, lexicon, word_lm, ...)."""
        opts = TranscribeOptions(decode=decode_options(beam, **setup), device=device)
        path = Path(checkpoint)
        name = path.parent.name if path.stem in ("best", "last") and path.parent.name \
            else path.stem
        return cls(Transcriber.load(path, opts), name)

    @property
    def modality(self) -> str:
        return self._t.task.modality

    def info(self) -> dict:
        """What the model is: name, modality, token set (blank first), whether its text
        joins the tokens (characters) or spaces them (phones), front end and decoding."""
        return {"name": self.name, "modality": self.modality,
                "characters": self._t.characters,
                "tokens": list(self._t.vocab.tokens), "front_end": self._t.task.feature_key,
                "decode": {"method": self._t.opts.decode.method,
                           "beam": self._t.opts.decode.beam}}

    def ink(self, strokes: Ink | Sequence[Sequence[Sequence[float]]],
            posteriors: bool = False) -> Recognition:
        """Recognise a line of ink (``Ink`` or nested lists, see ``Ink.of``)."""
        item = strokes if isinstance(strokes, Ink) else Ink.of(strokes)
        with self._lock:  # the lock is reentrant: the features stay this call's
            result = self._recognise(item, posteriors)
            rows = rows_per_stroke(self._t.last_ink_features, item,
                                   self._t.task.features)  # type: ignore[attr-defined]
        _add_ink_spans(result, item, rows, self._t.model.options.stack)
        return result

    def audio(self, samples: np.ndarray, rate: int, posteriors: bool = False) -> Recognition:
        """Recognise mono samples in [-1, 1] at ``rate`` Hz (resampled as files are)."""
        return self._recognise(Audio(np.asarray(samples), int(rate)), posteriors)

    def file(self, path: str | Path, posteriors: bool = False) -> Recognition:
        """Recognise an audio or ink file, as ``recog-transcribe`` reads it."""
        return self._recognise(Path(path), posteriors)

    def _recognise(self, item: Ink | Audio | Path, posteriors: bool) -> Recognition:
        captured: list[torch.Tensor] = []
        with self._lock:
            hook = self._t.model.register_forward_hook(
                lambda _m, _i, out: captured.append(out[0][0, : int(out[1][0])].detach()))
            try:
                (out,) = self._t([item], keys=["item"])
            finally:
                hook.remove()
        out.pop("file"), out.pop("key")
        probs = captured[0].float().exp().cpu().tolist() if posteriors and captured else None
        return Recognition(**out, posteriors=probs)


def rows_per_stroke(features: torch.Tensor, ink: Ink, opts: PenFeatureOptions) -> list[int]:
    """How many feature rows each stroke of ``ink`` got: read off the ``pen_up`` feature
    (1 on the first row of every stroke but the first) where the front end has one, else
    counted by ``feature_points`` (which normalises the ink again)."""
    if opts.kind != "bezier" and "pen_up" in opts.feature_names:
        up = features[:, opts.feature_names.index("pen_up")].numpy()
        starts = np.concatenate([[0], np.flatnonzero(up[1:] == 1.0) + 1, [len(up)]])
        return np.diff(starts).tolist()
    return [len(g) for g in feature_points(ink.strokes, opts)]


def _add_ink_spans(result: Recognition, ink: Ink, rows: Sequence[int], stack: int) -> None:
    """Give each token of an ink result the spans of input points it covers: from its first
    output frame to the next token's (the blanks after a CTC spike belong to the token before
    them); output frame f describes feature rows [f * stack, (f + 1) * stack), and a row is
    a point resampled along a stroke, mapped back to the input point at the same fraction of
    that stroke's path."""
    if len(rows) != len(ink.strokes):  # not one group per stroke: no spans to give
        return
    where: list[tuple[int, int]] = []  # (stroke, input point) per feature row
    for k, (stroke, count) in enumerate(zip(ink.strokes, rows, strict=True)):
        steps = np.hypot(*np.diff(stroke[:, :2], axis=0).T) if len(stroke) > 1 else np.zeros(0)
        arc = np.concatenate([[0.0], np.cumsum(steps)])
        frac = np.linspace(0.0, 1.0, count) if count > 1 else np.array([0.5])
        points = np.searchsorted(arc, frac * arc[-1], side="left").clip(0, len(stroke) - 1)
        where += [(k, int(p)) for p in points]
    starts = [e["frame_start"] for e in result.times][1:] + [len(where)]
    for entry, end in zip(result.times, starts, strict=True):
        covered = where[entry["frame_start"] * stack: end * stack]
        spans: list[list[int]] = []
        for k, p in covered:
            if spans and spans[-1][0] == k:
                spans[-1][2] = max(spans[-1][2], p)
            else:
                spans.append([k, p, p])
        entry["ink"] = spans
