"""Token sets: the CTC vocabulary (blank = 0) and the TIMIT 61 -> 48 -> 39 phone foldings.

The folding table is the one of Lee & Hon (1989), as distributed with Kaldi
(kaldi-asr/kaldi egs/timit/s5/conf/phones.60-48-39.map); SpeechBrain's timit_prepare.py holds
the same dictionaries. The glottal stop ``q`` has no target: it is deleted before training
and scoring.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

BLANK = "<blk>"

# TIMIT-61 label -> (48-set label, 39-set label); q -> None (deleted).
_TIMIT_FOLDING: dict[str, tuple[str, str] | None] = {
    "aa": ("aa", "aa"), "ae": ("ae", "ae"), "ah": ("ah", "ah"), "ao": ("ao", "aa"),
    "aw": ("aw", "aw"), "ax": ("ax", "ah"), "ax-h": ("ax", "ah"), "axr": ("er", "er"),
    "ay": ("ay", "ay"), "b": ("b", "b"), "bcl": ("vcl", "sil"), "ch": ("ch", "ch"),
    "d": ("d", "d"), "dcl": ("vcl", "sil"), "dh": ("dh", "dh"), "dx": ("dx", "dx"),
    "eh": ("eh", "eh"), "el": ("el", "l"), "em": ("m", "m"), "en": ("en", "n"),
    "eng": ("ng", "ng"), "epi": ("epi", "sil"), "er": ("er", "er"), "ey": ("ey", "ey"),
    "f": ("f", "f"), "g": ("g", "g"), "gcl": ("vcl", "sil"), "h#": ("sil", "sil"),
    "hh": ("hh", "hh"), "hv": ("hh", "hh"), "ih": ("ih", "ih"), "ix": ("ix", "ih"),
    "iy": ("iy", "iy"), "jh": ("jh", "jh"), "k": ("k", "k"), "kcl": ("cl", "sil"),
    "l": ("l", "l"), "m": ("m", "m"), "n": ("n", "n"), "ng": ("ng", "ng"),
    "nx": ("n", "n"), "ow": ("ow", "ow"), "oy": ("oy", "oy"), "p": ("p", "p"),
    "pau": ("sil", "sil"), "pcl": ("cl", "sil"), "q": None, "r": ("r", "r"),
    "s": ("s", "s"), "sh": ("sh", "sh"), "t": ("t", "t"), "tcl": ("cl", "sil"),
    "th": ("th", "th"), "uh": ("uh", "uh"), "uw": ("uw", "uw"), "ux": ("uw", "uw"),
    "v": ("v", "v"), "w": ("w", "w"), "y": ("y", "y"), "z": ("z", "z"),
    "zh": ("zh", "sh"),
}  # fmt: skip

TIMIT_61: tuple[str, ...] = tuple(sorted(_TIMIT_FOLDING))
TIMIT_48: tuple[str, ...] = tuple(sorted({v[0] for v in _TIMIT_FOLDING.values() if v}))
TIMIT_39: tuple[str, ...] = tuple(sorted({v[1] for v in _TIMIT_FOLDING.values() if v}))
PHONE_SETS = {61: TIMIT_61, 48: TIMIT_48, 39: TIMIT_39}


def fold_timit(phones: Iterable[str], to: int) -> list[str]:
    """Map TIMIT phones (61, 48 or 39-set symbols) to the ``to`` set, deleting ``q``.

    Symbols already in a smaller set pass through, so folding is idempotent and can be
    applied to hypotheses of a model trained on 48 or 39 phones. No merging of repeated
    ``sil`` (Kaldi's rule, which gives 15,057 dev and 7,215 core-test reference phones).
    """
    if to == 61:
        return [p for p in phones if p != "q"]
    col = {48: 0, 39: 1}[to]
    to48 = {v[0]: v for v in _TIMIT_FOLDING.values() if v}
    out = []
    for p in phones:
        entry = _TIMIT_FOLDING[p] if p in _TIMIT_FOLDING else to48.get(p)
        if entry is None and p == "q":
            continue
        if entry is None:
            if to == 39 and p in TIMIT_39:
                out.append(p)
                continue
            raise KeyError(f"not a TIMIT phone: {p!r}")
        out.append(entry[col])
    return out


@dataclass(frozen=True)
class Vocabulary:
    """An ordered token list with the CTC blank at index 0."""

    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.tokens or self.tokens[0] != BLANK:
            raise ValueError("index 0 of a vocabulary must be the blank")
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("a vocabulary lists each token once")

    @classmethod
    def from_symbols(cls, symbols: Sequence[str]) -> Vocabulary:
        return cls((BLANK, *symbols))

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    def encode(self, symbols: Sequence[str]) -> list[int]:
        index = self.index
        return [index[s] for s in symbols]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids]

    def to_json(self) -> str:
        return json.dumps(list(self.tokens))

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        return cls(tuple(json.loads(text)))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        return cls.from_json(Path(path).read_text())


def timit_vocabulary(phone_set: int) -> Vocabulary:
    """The CTC vocabulary for training on TIMIT's 61, 48 or 39 phones (``q`` excluded)."""
    if phone_set not in PHONE_SETS:
        raise ValueError(f"TIMIT phone set must be 61, 48 or 39, not {phone_set}")
    return Vocabulary.from_symbols([p for p in PHONE_SETS[phone_set] if p != "q"])
