"""The modality-specific ends of the pipeline, behind one small interface: which tokens a
model is trained on, how hypotheses are normalised for scoring, and how features are
computed from an utterance's source file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch

from recog.data.audio import read_audio
from recog.data.utterance import Utterance
from recog.features.audio import AudioFeatureOptions, audio_features
from recog.tokens import Vocabulary, fold_timit, timit_vocabulary


@dataclass
class TimitTask:
    """TIMIT-style phone recognition: train on 61, 48 or 39 phones, score on 39."""

    phone_set: int
    features: AudioFeatureOptions

    @property
    def vocabulary(self) -> Vocabulary:
        return timit_vocabulary(self.phone_set)

    def targets(self, utt: Utterance) -> list[str]:
        """The training labels of an utterance (q deleted, folded to the training set)."""
        return fold_timit(utt.tokens, self.phone_set)

    def normalize(self, tokens: Sequence[str]) -> list[str]:
        """Tokens as scored: the 39-phone folding, without merging repeated sil."""
        return fold_timit(tokens, 39)

    def extract(self, utt: Utterance) -> torch.Tensor:
        samples, rate = read_audio(utt.source)
        return audio_features(torch.from_numpy(samples), rate, self.features)

    @property
    def feature_key(self) -> dict:
        return {"front_end": "audio", **self.features.as_dict()}


def task_for(corpus_name: str, phone_set: int, features: AudioFeatureOptions) -> TimitTask:
    """The task for a corpus name (``timit``; more modalities plug in here)."""
    tasks = {"timit": partial(TimitTask, phone_set, features)}
    if corpus_name not in tasks:
        raise ValueError(f"unknown corpus.name {corpus_name!r}; known: {sorted(tasks)}")
    return tasks[corpus_name]()
