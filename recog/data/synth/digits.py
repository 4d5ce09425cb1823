"""Synthetic FSDD speakers: eSpeak NG voices saying the ten digits, written in FSDD's own
layout (``{digit}_{speaker}_{index}.wav``, 8 kHz, 16-bit), so that a corpus of a few real
speakers trains on many more voices than it has (``corpus.digit_synth.speakers``; they join
the training split only, never dev or test).

Each speaker is an English accent and voice variant of eSpeak with its own rate, pitch and
intonation range, varied a little per recording; the audio is trimmed to the word, as
FSDD's recordings are, and brought to a random level. As for synthetic TIMIT, every speaker
is synthesised in a fresh process, so the files are byte-identical for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional

from recog.data.fsdd import DIGIT_WORDS
from recog.data.synth import espeak
from recog.data.synth.staging import fresh_pool, staged_folder
from recog.data.synth.timit import DIALECT_ACCENTS, FEMALE_VARIANTS, MALE_VARIANTS
from recog.progress import Progress

SAMPLE_RATE = 8000  # FSDD's
SPEAKER_PREFIX = "espeak"  # speaker names espeak00, espeak01, ...


@dataclass
class DigitSynthOptions:
    """How many eSpeak speakers to add and how often each says every digit."""

    speakers: int = 0  # 0: none
    repeats: int = 3  # recordings of each digit per speaker
    seed: int = 0
    workers: int = 2

    def __post_init__(self) -> None:
        if self.speakers < 0 or self.repeats < 1 or self.workers < 1:
            raise ValueError("corpus.digit_synth: speakers >= 0, repeats >= 1, workers >= 1")


@dataclass(frozen=True)
class _Speaker:
    name: str
    voice: str  # eSpeak voice, e.g. en-us+m3
    rate_wpm: int
    pitch: int
    pitch_range: int


def _plan(options: DigitSynthOptions) -> list[_Speaker]:
    rng = np.random.default_rng([options.seed, 7])
    variants = MALE_VARIANTS + FEMALE_VARIANTS
    return [_Speaker(f"{SPEAKER_PREFIX}{i:02d}",
                     f"{DIALECT_ACCENTS[i % len(DIALECT_ACCENTS)]}+"
                     f"{variants[rng.integers(len(variants))]}",
                     int(rng.integers(110, 231)), int(rng.integers(15, 86)),
                     int(rng.integers(20, 81))) for i in range(options.speakers)]


def _render(speaker: _Speaker, word: str, rng: np.random.Generator) -> np.ndarray:
    """One recording of ``word`` at 8 kHz: the speaker's prosody varied a little, trimmed to
    the word (40 ms kept either side), peak at a random level."""
    rate = int(np.clip(speaker.rate_wpm + rng.integers(-20, 21), 80, 450))
    pitch = int(np.clip(speaker.pitch + rng.integers(-8, 9), 0, 100))
    spread = int(np.clip(speaker.pitch_range + rng.integers(-10, 11), 0, 100))
    syn = espeak.synthesize(word, speaker.voice, rate_wpm=rate, pitch=pitch,
                            pitch_range=spread)
    x = syn.samples.astype(np.float32) / 32768
    loud = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
    margin = int(0.04 * espeak.sample_rate())
    x = x[max(loud[0] - margin, 0):loud[-1] + margin]
    y = torchaudio.functional.resample(torch.from_numpy(x), espeak.sample_rate(), SAMPLE_RATE)
    return (y / y.abs().max() * rng.uniform(0.2, 0.9)).numpy()


def _write_speaker(job: tuple[_Speaker, int, Path, int, int]) -> int:
    speaker, index, folder, repeats, seed = job
    torch.set_num_threads(1)
    rng = np.random.default_rng([seed, index])
    for digit, word in enumerate(DIGIT_WORDS):
        for k in range(repeats):
            soundfile.write(folder / f"{digit}_{speaker.name}_{k}.wav",
                            _render(speaker, word, rng), SAMPLE_RATE, subtype="PCM_16")
    return len(DIGIT_WORDS) * repeats


def generate_digits(parent: Path, options: DigitSynthOptions, progress: bool = True) -> Path:
    """The speakers' recordings in ``parent/espeak_digits-s{speakers}-r{repeats}-seed{seed}``
    (built, atomically, unless it exists), which is returned."""
    target = Path(parent) / (f"espeak_digits-s{options.speakers}-r{options.repeats}"
                             f"-seed{options.seed}")
    if target.exists():
        return target
    speakers = _plan(options)
    with staged_folder(target) as staging:
        jobs = [(s, i, staging, options.repeats, options.seed) for i, s in enumerate(speakers)]
        done, bar = 0, Progress(len(jobs) * len(DIGIT_WORDS) * options.repeats,
                                "synth digits", progress)
        with fresh_pool(options.workers, __name__) as pool:
            for count in pool.imap_unordered(_write_speaker, jobs):
                done += count
                bar.update(done)
    return target
