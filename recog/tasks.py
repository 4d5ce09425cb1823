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
from recog.data.manifest import read_strokes
from recog.data.utterance import DataError, Utterance
from recog.features.audio import AudioFeatureOptions, audio_features
from recog.features.ink_augment import perturbed_strokes
from recog.features.pen import PenFeatureOptions, feature_points, pen_features
from recog.features.perturb import perturb
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
        return speech_features(utt, self.features)

    @property
    def feature_key(self) -> dict:
        return {"front_end": "audio", **self.features.as_dict()}


def speech_features(utt: Utterance, opts: AudioFeatureOptions) -> torch.Tensor:
    """Audio features of an utterance (its segment, when it has an offset or duration)."""
    samples, rate = read_audio(utt.source, utt.extra.get("offset", 0.0),
                               utt.extra.get("duration"))
    waveform = perturb(torch.from_numpy(samples), rate, utt.extra)  # training copies only
    return audio_features(waveform, rate, opts, warp=utt.extra.get("vtlp", 1.0))


@dataclass
class SpeechTask:
    """Speech with the corpus's own tokens (bring-your-own data): the vocabulary is the token
    list when given, else every token of the training transcripts; scored as is (``PER`` for
    phones, ``TER`` for a token list) or as characters and words (``CER``, ``WER``)."""

    features: AudioFeatureOptions
    tokens: str = "phones"  # chars | phones | list
    token_list: tuple[str, ...] = ()

    @property
    def metrics(self) -> dict[str, Normalizer]:
        if self.tokens == "chars":
            return {"CER": list, "WER": _words}
        return {"TER" if self.tokens == "list" else "PER": list}

    def vocabulary(self, train: Sequence[Utterance]) -> Vocabulary:
        if self.token_list:
            return Vocabulary.from_symbols(self.token_list)
        return Vocabulary.from_symbols(sorted({t for u in train for t in u.tokens}))

    def targets(self, utt: Utterance) -> list[str]:
        return list(utt.tokens)

    def to_text(self, tokens: Sequence[str]) -> str:
        return "".join(tokens) if self.tokens == "chars" else " ".join(tokens)

    def extract(self, utt: Utterance) -> torch.Tensor:
        return speech_features(utt, self.features)

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
        """The normalised strokes as the points the feature rows describe, one per row."""
        return feature_points(read_strokes(utt.source), self.features)

    def extract(self, utt: Utterance) -> torch.Tensor:
        try:  # a training copy's strokes are perturbed (augment.ink), never at decode time
            return pen_features(perturbed_strokes(read_strokes(utt.source), utt),
                                self.features)
        except ValueError as e:
            if isinstance(e, DataError):
                raise
            raise DataError(utt.source, str(e)) from None

    @property
    def feature_key(self) -> dict:
        return {"front_end": "pen", **self.features.as_dict()}
