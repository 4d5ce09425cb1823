"""The modality-specific ends of the pipeline, behind one small interface: the token set a
model is trained on, how token sequences are scored, and how features are computed from an
utterance's source file. Everything between (cache, batching, model, loop, decoders) is
shared and knows nothing of audio or ink."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from recog.data.audio import read_audio
from recog.data.iamondb import read_line_strokes
from recog.data.utterance import Utterance
from recog.features.audio import AudioFeatureOptions, audio_features
from recog.features.pen import PenFeatureOptions, normalize_ink, pen_features, resample
from recog.tokens import Vocabulary, fold_timit, timit_vocabulary

Normalizer = Callable[[Sequence[str]], Sequence[str]]


class Task(Protocol):
    metrics: dict[str, Normalizer]  # name -> how a token sequence is scored; first selects

    def vocabulary(self, train: Sequence[Utterance]) -> Vocabulary: ...
    def targets(self, utt: Utterance) -> list[str]: ...
    def to_text(self, tokens: Sequence[str]) -> str: ...
    def extract(self, utt: Utterance) -> torch.Tensor: ...
    @property
    def feature_key(self) -> dict: ...


def _fold39(tokens: Sequence[str]) -> list[str]:
    return fold_timit(tokens, 39)


@dataclass
class TimitTask:
    """Phone recognition: train on 61, 48 or 39 TIMIT phones, score on 39 (PER)."""

    phone_set: int
    features: AudioFeatureOptions
    metrics = {"PER": _fold39}

    def vocabulary(self, train: Sequence[Utterance]) -> Vocabulary:
        return timit_vocabulary(self.phone_set)

    def targets(self, utt: Utterance) -> list[str]:
        """The training labels of an utterance (q deleted, folded to the training set)."""
        return fold_timit(utt.tokens, self.phone_set)

    def to_text(self, tokens: Sequence[str]) -> str:
        return " ".join(tokens)

    def extract(self, utt: Utterance) -> torch.Tensor:
        samples, rate = read_audio(utt.source)
        return audio_features(torch.from_numpy(samples), rate, self.features)

    @property
    def feature_key(self) -> dict:
        return {"front_end": "audio", **self.features.as_dict()}


def _words(chars: Sequence[str]) -> list[str]:
    return "".join(chars).split()


@dataclass
class InkTask:
    """Handwriting recognition: characters of the training transcripts; CER and WER."""

    features: PenFeatureOptions
    metrics = {"CER": list, "WER": _words}

    def vocabulary(self, train: Sequence[Utterance]) -> Vocabulary:
        """Every character of the training transcripts (space included), sorted."""
        return Vocabulary.from_symbols(sorted({c for u in train for c in u.tokens}))

    def targets(self, utt: Utterance) -> list[str]:
        return list(utt.tokens)

    def to_text(self, tokens: Sequence[str]) -> str:
        return "".join(tokens)

    def points(self, utt: Utterance) -> list[np.ndarray]:
        """The normalised, resampled strokes whose points the feature rows describe."""
        strokes = read_line_strokes(utt.source)
        if self.features.normalize:
            strokes = normalize_ink(strokes, self.features.slant)
        else:  # as pen_features does: only y flipped to point up
            strokes = [s * np.array([1.0, -1.0, 1.0]) for s in strokes]
        return resample(strokes, self.features.resample_step)

    def extract(self, utt: Utterance) -> torch.Tensor:
        return pen_features(read_line_strokes(utt.source), self.features)

    @property
    def feature_key(self) -> dict:
        return {"front_end": "pen", **self.features.as_dict()}
