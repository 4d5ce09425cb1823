"""Error rates with substitutions, deletions and insertions, and Kaldi ``text`` files.

Totals count errors with ``editdistance`` (the fast path); the S/D/I split comes from a
Levenshtein alignment whose error total is checked against it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import editdistance

from recog.data.utterance import DataError, atomic_write_text


@dataclass
class ErrorCounts:
    """Reference length and the three kinds of error, summable across utterances."""

    n: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0

    @property
    def errors(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def rate(self) -> float:
        return 100.0 * self.errors / self.n if self.n else 0.0

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(self.n + other.n, self.sub + other.sub, self.dele + other.dele,
                           self.ins + other.ins)

    def as_dict(self) -> dict:
        return {"n": self.n, "sub": self.sub, "del": self.dele, "ins": self.ins,
                "err": self.errors, "error_rate": round(self.rate, 4)}


def align_counts(ref: Sequence[str], hyp: Sequence[str]) -> ErrorCounts:
    """S/D/I of a minimum-edit-distance alignment (ties prefer substitutions)."""
    n, m = len(ref), len(hyp)
    # cost[i][j] = (errors, subs, dels, ins) aligning ref[:i] with hyp[:j]
    prev = [(j, 0, 0, j) for j in range(m + 1)]
    for i in range(1, n + 1):
        cur = [(i, 0, i, 0)]
        for j in range(1, m + 1):
            e, s, d, ins = prev[j - 1]
            same = ref[i - 1] == hyp[j - 1]
            best = (e + (not same), s + (not same), d, ins)
            e, s, d, ins = prev[j]
            if e + 1 < best[0]:
                best = (e + 1, s, d + 1, ins)
            e, s, d, ins = cur[j - 1]
            if e + 1 < best[0]:
                best = (e + 1, s, d, ins + 1)
            cur.append(best)
        prev = cur
    e, s, d, ins = prev[m]
    counts = ErrorCounts(n, s, d, ins)
    assert counts.errors == editdistance.eval(list(ref), list(hyp)) == e
    return counts


@dataclass
class Score:
    """Corpus totals, per-speaker totals and per-utterance counts."""

    total: ErrorCounts
    per_speaker: dict[str, ErrorCounts] = field(default_factory=dict)
    per_utterance: dict[str, ErrorCounts] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            **self.total.as_dict(),
            "utterances": len(self.per_utterance),
            "per_speaker": {k: v.as_dict() for k, v in sorted(self.per_speaker.items())},
        }


def speaker_of(utt_id: str) -> str:
    """sclite's spu_id convention: the speaker is the id's prefix before the first _ or -."""
    for i, ch in enumerate(utt_id):
        if ch in "_-":
            return utt_id[:i]
    return utt_id


def score(
    refs: Mapping[str, Sequence[str]],
    hyps: Mapping[str, Sequence[str]],
    normalize: Callable[[Sequence[str]], Sequence[str]] = tuple,
    utt2spk: Mapping[str, str] | None = None,
) -> Score:
    """Score every reference utterance; a missing hypothesis counts as empty (all deletions)."""
    total, per_spk, per_utt = ErrorCounts(), {}, {}
    extra = set(hyps) - set(refs)
    if extra:
        raise ValueError(f"{len(extra)} hypotheses have no reference, e.g. {sorted(extra)[0]}")
    for utt, ref in refs.items():
        c = align_counts(normalize(ref), normalize(hyps.get(utt, ())))
        per_utt[utt] = c
        spk = utt2spk[utt] if utt2spk else speaker_of(utt)
        per_spk[spk] = per_spk.get(spk, ErrorCounts()) + c
        total = total + c
    return Score(total, per_spk, per_utt)


def read_text(path: str | Path) -> dict[str, list[str]]:
    """Read a Kaldi ``text`` file: '<utterance-id> token token ...' per line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    out: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if parts[0] in out:
            raise DataError(path, f"utterance {parts[0]!r} appears twice", n)
        out[parts[0]] = parts[1:]
    return out


def write_text(path: str | Path, entries: Mapping[str, Sequence[str]]) -> None:
    """Write a Kaldi ``text`` file, sorted by utterance id."""
    atomic_write_text(path, "".join(f"{k} {' '.join(v)}".rstrip() + "\n"
                                    for k, v in sorted(entries.items())))


def write_trn(path: str | Path, entries: Mapping[str, Sequence[str]]) -> None:
    """Write an sclite ``trn`` file: 'token token ... (utterance-id)' per line."""
    atomic_write_text(path, "".join(f"{' '.join(v)} ({k})\n" for k, v in sorted(entries.items())))


