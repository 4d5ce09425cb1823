"""The modality-specific ends of the pipeline, behind one small interface: a task is one
modality (speech or ink; ``recog.stages.corpora.MODALITIES`` names them for the corpora
that say theirs) with one token set. It owns how a source is read and turned into features
(its front end, ``features``), the copies augmentation makes, the token set a model is
trained on, how token sequences are scored (``metrics``, and the one that selects the
model, ``selection``), the picture of an utterance in a report, and the record a checkpoint
keeps of it. Everything between (cache, batching, model, loop, decoders) is shared and
knows nothing of audio or ink."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
import torch

from recog.augment import AugmentOptions, perturbed_copies
from recog.data.audio import read_audio
from recog.data.manifest import INK_SUFFIXES, read_strokes
from recog.data.utterance import DataError, Utterance
from recog.features.audio import AudioFeatureOptions, audio_features
from recog.features.ink_augment import ink_copies, perturbed_strokes
from recog.features.pen import PenFeatureOptions, feature_points, pen_features
from recog.features.perturb import perturb
from recog.options import from_dict
from recog.tokens import Vocabulary, fold_timit, timit_vocabulary

Normalizer = Callable[[Sequence[str]], Sequence[str]]

# the audio files recog-transcribe takes (what soundfile reads)
AUDIO_SUFFIXES = frozenset(".wav .flac .ogg .oga .opus .mp3 .aif .aiff .au .snd .sph .nist "
                           ".w64 .rf64 .caf .voc".split())


# the augment options that shape the speech training copies' waveforms: their cache key
PERTURB_KEYS = ("speed_factors", "noise_prob", "noise_snr", "vtlp", "seed", "noise_colour",
                "reverb_prob", "reverb_t60", "eq_bands", "eq_gain")


class Task(Protocol):
    modality: ClassVar[str]  # speech | ink
    front_end: ClassVar[str]  # the config's feature group: audio | pen
    suffixes: ClassVar[frozenset[str]]  # the source files it reads
    features: AudioFeatureOptions | PenFeatureOptions
    metrics: dict[str, Normalizer]  # name -> how a token sequence is scored
    selection: str  # the metric that chooses the model (best.pt) and tunes the LM
    characters: bool  # the tokens are characters: the text is their concatenation
    token_kind: str  # phones | chars | words | list (a token list: its spellings say no more)
    kind: ClassVar[str]  # its name in a checkpoint's front-end record (TASKS)

    def vocabulary(self, train: Sequence[Utterance]) -> Vocabulary: ...
    def targets(self, utt: Utterance) -> list[str]: ...
    def to_text(self, tokens: Sequence[str]) -> str: ...
    def extract(self, utt: Utterance) -> torch.Tensor: ...
    def copies(self, utts: list[Utterance], augment: AugmentOptions
               ) -> tuple[list[Utterance], str, dict] | None: ...
    def resized(self, utt: Utterance) -> bool: ...
    def record_options(self) -> dict: ...
    def picture(self, utt: Utterance, view: Picture) -> Path: ...
    @property
    def feature_key(self) -> dict: ...
    @property
    def feature_blocks(self) -> int: ...


@dataclass(frozen=True)
class Picture:
    """What a report draws one utterance from: its (normalised) features, the model's
    log-probs, the reference's ids, the hypothesis, the tokens and where to write."""

    feats: np.ndarray
    log_probs: np.ndarray
    ref_ids: Sequence[int]
    hyp: Sequence[str]
    tokens: Sequence[str]
    stack: int
    out: Path
    caption: str


def _fold39(tokens: Sequence[str]) -> list[str]:
    return fold_timit(tokens, 39)


def _words(chars: Sequence[str]) -> list[str]:
    return "".join(chars).split()


def _spelt(words: Sequence[str]) -> list[str]:
    """The characters of word tokens' text (a space between words): CER of a word model."""
    return list(" ".join(words))


class _Speech:
    """What every speech task shares: audio in, filterbank/MFCC features out, speed, noise
    and VTLP copies for training, a posteriorgram in the report."""

    modality: ClassVar[str] = "speech"
    front_end: ClassVar[str] = "audio"
    suffixes: ClassVar[frozenset[str]] = AUDIO_SUFFIXES
    features: AudioFeatureOptions

    def __post_init__(self) -> None:  # the subclasses' dataclass __init__ calls it
        self.features.check()

    def extract(self, utt: Utterance) -> torch.Tensor:
        """Audio features of an utterance (its segment, when it has an offset or duration;
        a training copy's speed, noise and warp)."""
        samples, rate = read_audio(utt.source, utt.offset, utt.duration)
        waveform = perturb(torch.from_numpy(samples), rate, utt.extra)  # training copies only
        return audio_features(waveform, rate, self.features, warp=utt.extra.get("vtlp", 1.0))

    def copies(self, utts: list[Utterance], augment: AugmentOptions
               ) -> tuple[list[Utterance], str, dict] | None:
        """The perturbed training copies (speed, noise, VTLP), their cache name and what
        enters its key; None when ``augment`` asks for none. Ink copies are an error."""
        if not augment.copies:
            if augment.ink.copies > 0:
                raise ValueError("augment.ink perturbs pen strokes: it is for ink corpora")
            return None
        key = {k: v for k, v in augment.as_dict().items() if k in PERTURB_KEYS}
        return perturbed_copies(utts, augment), "perturbed", {"perturb": key}

    def resized(self, utt: Utterance) -> bool:
        """A training copy whose frames are not its source's (sped up): one that no longer
        fits its labels is left out with a warning, not refused."""
        return utt.extra.get("speed", 1.0) != 1.0

    def picture(self, utt: Utterance, view: Picture) -> Path:
        from recog import plots

        return plots.posteriorgram(view.feats, view.log_probs, view.tokens, view.ref_ids,
                                   view.out / "posteriorgram.png", view.caption, view.stack)

    @property
    def feature_key(self) -> dict:
        return {"front_end": self.front_end, **self.features.as_dict()}

    @property
    def feature_blocks(self) -> int:
        """Blocks of the feature vector (static, deltas, ...): SpecAugment masks each alike."""
        return self.features.delta_order + 1


@dataclass
class TimitTask(_Speech):
    """Phone recognition: train on 61, 48 or 39 TIMIT phones, score on 39 (PER)."""

    phone_set: int
    features: AudioFeatureOptions
    metrics: ClassVar[dict[str, Normalizer]] = {"PER": _fold39}
    selection: ClassVar[str] = "PER"
    characters: ClassVar[bool] = False
    token_kind: ClassVar[str] = "phones"
    kind: ClassVar[str] = "timit"

    def vocabulary(self, train: Sequence[Utterance]) -> Vocabulary:
        return timit_vocabulary(self.phone_set)

    def targets(self, utt: Utterance) -> list[str]:
        """The training labels of an utterance (q deleted, folded to the training set)."""
        return fold_timit(utt.tokens, self.phone_set)

    def to_text(self, tokens: Sequence[str]) -> str:
        return " ".join(tokens)

    def record_options(self) -> dict:
        return {"phone_set": self.phone_set}

    @classmethod
    def from_record(cls, record: dict) -> TimitTask:
        return cls(int(record["phone_set"]), from_dict(AudioFeatureOptions, record["audio"]))


@dataclass
class SpeechTask(_Speech):
    """Speech with the corpus's own tokens (bring-your-own data): the vocabulary is the token
    list when given, else every token of the training transcripts; scored as is (``PER`` for
    phones, ``TER`` for a token list) or as characters and words (``CER``, ``WER``)."""

    features: AudioFeatureOptions
    tokens: str = "phones"  # chars | phones | words | list
    token_list: tuple[str, ...] = ()
    kind: ClassVar[str] = "speech"

    @property
    def metrics(self) -> dict[str, Normalizer]:
        if self.tokens == "chars":
            return {"CER": list, "WER": _words}
        if self.tokens == "words":
            return {"CER": _spelt, "WER": list}
        return {"TER" if self.tokens == "list" else "PER": list}

    @property
    def selection(self) -> str:
        return {"chars": "CER", "words": "WER", "list": "TER"}.get(self.tokens, "PER")

    @property
    def characters(self) -> bool:
        return self.tokens == "chars"

    @property
    def token_kind(self) -> str:
        return self.tokens

    def vocabulary(self, train: Sequence[Utterance]) -> Vocabulary:
        if self.token_list:
            return Vocabulary.from_symbols(self.token_list)
        return Vocabulary.from_symbols(sorted({t for u in train for t in u.tokens}))

    def targets(self, utt: Utterance) -> list[str]:
        return list(utt.tokens)

    def to_text(self, tokens: Sequence[str]) -> str:
        return "".join(tokens) if self.characters else " ".join(tokens)

    def record_options(self) -> dict:
        return {"tokens": self.tokens, "token_list": list(self.token_list)}

    @classmethod
    def from_record(cls, record: dict) -> SpeechTask:
        return cls(from_dict(AudioFeatureOptions, record["audio"]), str(record["tokens"]),
                   tuple(record.get("token_list", ())))


@dataclass
class InkTask:
    """Handwriting recognition: characters of the training transcripts; CER and WER."""

    features: PenFeatureOptions
    modality: ClassVar[str] = "ink"
    front_end: ClassVar[str] = "pen"
    suffixes: ClassVar[frozenset[str]] = frozenset(INK_SUFFIXES)
    metrics: ClassVar[dict[str, Normalizer]] = {"CER": list, "WER": _words}
    selection: ClassVar[str] = "CER"
    characters: ClassVar[bool] = True
    token_kind: ClassVar[str] = "chars"
    feature_blocks: ClassVar[int] = 1
    kind: ClassVar[str] = "ink"

    def vocabulary(self, train: Sequence[Utterance]) -> Vocabulary:
        """Every character of the training transcripts (space included), sorted."""
        return Vocabulary.from_symbols(sorted({c for u in train for c in u.tokens}))

    def targets(self, utt: Utterance) -> list[str]:
        return list(utt.tokens)

    def to_text(self, tokens: Sequence[str]) -> str:
        return "".join(tokens)

    def extract(self, utt: Utterance) -> torch.Tensor:
        try:  # a training copy's strokes are perturbed (augment.ink), never at decode time
            return pen_features(perturbed_strokes(read_strokes(utt.source), utt),
                                self.features)
        except ValueError as e:
            if isinstance(e, DataError):
                raise
            raise DataError(utt.source, str(e)) from None

    def copies(self, utts: list[Utterance], augment: AugmentOptions
               ) -> tuple[list[Utterance], str, dict] | None:
        """The perturbed training copies of the strokes (augment.ink), their cache name and
        key; None when none are asked for. Audio copies are an error."""
        if augment.copies:
            raise ValueError("augment.speed_factors and augment.noise_prob perturb audio: "
                             "they are for speech corpora")
        if augment.ink.copies <= 0:
            return None
        return (ink_copies(utts, augment.ink, augment.seed), "ink-augmented",
                {"ink_augment": {**augment.ink.as_dict(), "seed": augment.seed}})

    def resized(self, utt: Utterance) -> bool:
        """A perturbed copy of the strokes (time-warped, points dropped)."""
        return "ink_seed" in utt.extra

    def picture(self, utt: Utterance, view: Picture) -> Path:
        """The ink coloured by the character each point is forced-aligned to."""
        from recog import plots

        strokes = feature_points(read_strokes(utt.source), self.features)
        n_points = sum(len(stroke) for stroke in strokes)
        ids = plots.align_points(view.log_probs, view.ref_ids, n_points, view.stack)
        chars = [view.tokens[i] if i is not None else None for i in ids]
        return plots.ink(strokes, chars, view.out / "ink.png", self.to_text(utt.tokens),
                         self.to_text(view.hyp))

    @property
    def feature_key(self) -> dict:
        return {"front_end": self.front_end, **self.features.as_dict()}

    def record_options(self) -> dict:
        return {}

    @classmethod
    def from_record(cls, record: dict) -> InkTask:
        return cls(from_dict(PenFeatureOptions, record["pen"]))


# a front-end record's task kind -> its class (what reads a checkpoint's record back)
TASKS: dict[str, type] = {"timit": TimitTask, "speech": SpeechTask, "ink": InkTask}


# --------------------------------------------------------------------------- checkpoints
FRONT_END_VERSION = 1  # of the record below


def front_end_record(task: Task) -> dict:
    """The small versioned record a checkpoint keeps of its front end (``front_end``):
    the modality, the task that reads and scores it (``kind`` and its own options), its
    feature options under the config's group name (``audio`` or ``pen``), its token kind
    and metrics. Transcription, decoding, fine-tuning and export read only this, never the
    training run's config."""
    return {"version": FRONT_END_VERSION, "modality": task.modality, "task": task.kind,
            task.front_end: task.features.as_dict(), "token_kind": task.token_kind,
            "metrics": list(task.metrics), "selection": task.selection,
            **task.record_options()}


def task_of_record(record: dict, path: str | Path) -> Task:
    """The task a checkpoint's front-end record describes (``TASKS``); a record this
    version cannot read is a DataError naming the checkpoint."""
    if not isinstance(record, dict) or record.get("version") != FRONT_END_VERSION:
        version = record.get("version") if isinstance(record, dict) else None
        raise DataError(path, f"front-end record of version {version!r}; this recog reads "
                        f"version {FRONT_END_VERSION}")
    kind = record.get("task")
    if kind not in TASKS:
        raise DataError(path, f"front-end record of an unknown task {kind!r} (known: "
                        f"{', '.join(TASKS)})")
    try:
        return TASKS[kind].from_record(record)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(path, f"front-end record does not fit this version: {e}") from None


def checkpoint_front_end(payload: dict, path: str | Path) -> dict:
    """A checkpoint's front-end record: its own (``front_end``), or for a checkpoint of
    format 1 or 2, which kept the training run's whole config instead, the record made from
    the few keys of that config that say it (the one migration of the old layout)."""
    if "front_end" in payload:
        return payload["front_end"]
    config = payload.get("config") or {}
    corpus, features = config.get("corpus") or {}, config.get("features") or {}
    if not (isinstance(corpus, dict) and isinstance(features, dict) and (corpus or features)):
        raise DataError(path, "checkpoint holds no front-end record and no training config "
                        "(corpus, features) to make one from")
    return front_end_record(_migrated_task(corpus, features, path))


def _migrated_task(corpus: dict, features: dict, path: str | Path) -> Task:
    """The task of a format-2 checkpoint's ``config["corpus"]`` and ``["features"]``, as
    that version's corpus registry chose it (absent keys at their defaults then)."""
    from recog.data.fsdd import LETTERS

    name = corpus.get("name", "timit")
    ink = name == "iamondb" or (name in ("manifest", "kaldi_dir")
                                and corpus.get("modality") == "ink")
    group = "pen" if ink else "audio"
    if group not in features:
        raise DataError(path, f"checkpoint config holds no features.{group} options")
    try:
        if ink:
            return InkTask(from_dict(PenFeatureOptions, features["pen"]))
        audio = from_dict(AudioFeatureOptions, features["audio"])
    except DataError as e:
        raise DataError(path, f"checkpoint config does not fit this version: {e}") from None
    if name == "timit":
        return TimitTask(int(corpus.get("phone_set", 61)), audio)
    if name == "fsdd":
        return SpeechTask(audio, "chars", LETTERS)
    return SpeechTask(audio, str(corpus.get("tokens", "phones")))
