"""Error rates as NIST sclite counts them, and Kaldi ``text`` / sclite ``trn`` files.

The alignment minimises sclite's weighted cost (substitution 4, insertion 3, deletion 3),
so N, S, D, I and the error total equal what sclite prints for the same files;
``editdistance`` stays the fast path where only the error count matters (model selection).
The 95 % confidence interval of a corpus error rate is a bootstrap over speakers
(Bisani & Ney, ICASSP 2004).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import editdistance
import numpy as np

from recog.atomic import atomic_write_text
from recog.data.utterance import DataError

SUB_COST, INS_COST, DEL_COST = 4, 3, 3  # sclite's default weights
Op = tuple[str, str | None, str | None]  # ("C" | "S" | "D" | "I", ref token, hyp token)


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
    def correct(self) -> int:
        return self.n - self.sub - self.dele

    @property
    def rate(self) -> float:
        return 100.0 * self.errors / self.n if self.n else 0.0

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(self.n + other.n, self.sub + other.sub, self.dele + other.dele,
                           self.ins + other.ins)

    def as_dict(self) -> dict:
        return {"n": self.n, "cor": self.correct, "sub": self.sub, "del": self.dele,
                "ins": self.ins, "err": self.errors, "error_rate": round(self.rate, 4)}


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[Op]:
    """The alignment of minimum sclite cost, as a list of C/S/D/I operations."""
    n, m = len(ref), len(hyp)
    cost = np.zeros((n + 1, m + 1), dtype=np.int64)
    cost[:, 0] = np.arange(n + 1) * DEL_COST
    cost[0, :] = np.arange(m + 1) * INS_COST
    for i in range(1, n + 1):
        r, prev, row = ref[i - 1], cost[i - 1], cost[i]
        for j in range(1, m + 1):
            diag = prev[j - 1] + (0 if r == hyp[j - 1] else SUB_COST)
            row[j] = min(diag, prev[j] + DEL_COST, row[j - 1] + INS_COST)
    ops: list[Op] = []
    i, j = n, m
    while i or j:
        if i and j and cost[i, j] == cost[i - 1, j - 1] + (
                0 if ref[i - 1] == hyp[j - 1] else SUB_COST):
            ops.append(("C" if ref[i - 1] == hyp[j - 1] else "S", ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif j and cost[i, j] == cost[i, j - 1] + INS_COST:  # sclite's choice among ties
            ops.append(("I", None, hyp[j - 1]))
            j -= 1
        else:
            ops.append(("D", ref[i - 1], None))
            i -= 1
    return ops[::-1]


def counts(ops: Sequence[Op], n: int) -> ErrorCounts:
    tags = Counter(op[0] for op in ops)
    return ErrorCounts(n, tags["S"], tags["D"], tags["I"])


def align_counts(ref: Sequence[str], hyp: Sequence[str]) -> ErrorCounts:
    """S/D/I of the sclite alignment of one utterance."""
    return counts(align(ref, hyp), len(ref))


def error_count(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """The minimum number of edits (Levenshtein), the fast path for model selection."""
    return editdistance.eval(list(ref), list(hyp))


@dataclass
class Score:
    """Corpus totals, per-speaker and per-utterance counts, and the alignments."""

    total: ErrorCounts
    per_speaker: dict[str, ErrorCounts] = field(default_factory=dict)
    per_utterance: dict[str, ErrorCounts] = field(default_factory=dict)
    alignments: dict[str, list[Op]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # references without a hypothesis

    def confidence_interval(self, level: float = 0.95, samples: int = 1000, seed: int = 0
                            ) -> tuple[float, float]:
        """Bootstrap interval of the error rate, resampling speakers with replacement."""
        spk = [c for _, c in sorted(self.per_speaker.items())]  # the same for any input order
        errs = np.array([c.errors for c in spk], dtype=np.float64)
        ns = np.array([c.n for c in spk], dtype=np.float64)
        rng = np.random.default_rng(seed)
        draw = rng.integers(0, len(spk), size=(samples, len(spk)))
        rates = 100.0 * errs[draw].sum(1) / np.maximum(ns[draw].sum(1), 1)
        lo, hi = np.percentile(rates, [50 * (1 - level), 100 - 50 * (1 - level)])
        return float(lo), float(hi)

    def pairs(self) -> list[tuple[str | None, str | None]]:
        """Every aligned (reference, hypothesis) token pair, for confusion matrices."""
        return [(r, h) for ops in self.alignments.values() for _, r, h in ops]

    def confusions(self, top: int = 10) -> list[tuple[tuple[str, str], int]]:
        return Counter((r, h) for ops in self.alignments.values()
                       for tag, r, h in ops if tag == "S").most_common(top)

    def inserted(self, top: int = 10) -> list[tuple[str, int]]:
        return Counter(h for ops in self.alignments.values()
                       for tag, _, h in ops if tag == "I").most_common(top)

    def deleted(self, top: int = 10) -> list[tuple[str, int]]:
        return Counter(r for ops in self.alignments.values()
                       for tag, r, _ in ops if tag == "D").most_common(top)

    def as_dict(self, seed: int = 0) -> dict:
        lo, hi = self.confidence_interval(seed=seed)
        return {
            **self.total.as_dict(),
            "utterances": len(self.per_utterance),
            "ci95": [round(lo, 4), round(hi, 4)],
            "missing_hypotheses": self.missing,
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
    """Score every reference utterance; a missing hypothesis counts as empty (all deletions)
    and is listed in ``Score.missing``. A hypothesis without a reference is a ValueError."""
    extra = set(hyps) - set(refs)
    if extra:
        raise ValueError(f"{len(extra)} hypotheses have no reference, e.g. {sorted(extra)[0]}")
    result = Score(ErrorCounts(), missing=sorted(set(refs) - set(hyps)))
    for utt, ref in refs.items():
        r, h = list(normalize(ref)), list(normalize(hyps.get(utt, ())))
        ops = align(r, h)
        c = counts(ops, len(r))
        result.alignments[utt], result.per_utterance[utt] = ops, c
        spk = utt2spk[utt] if utt2spk else speaker_of(utt)
        result.per_speaker[spk] = result.per_speaker.get(spk, ErrorCounts()) + c
        result.total = result.total + c
    return result


def report(s: Score, title: str, worst: int = 5, seed: int = 0) -> str:
    """sclite-style summary as markdown: totals with CI, per speaker, confusions, worst."""
    t, (lo, hi) = s.total, s.confidence_interval(seed=seed)

    def row(name: str, c: ErrorCounts) -> str:
        return (f"| {name} | {c.n} | {c.correct} | {c.sub} | {c.dele} | {c.ins} | {c.errors} "
                f"| {c.rate:.2f} |")

    head = ("| speaker | N | Cor | Sub | Del | Ins | Err | Err % |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [f"# {title}", "",
             f"**{t.rate:.2f} %** error rate ({t.errors} / {t.n}), 95 % CI "
             f"[{lo:.2f}, {hi:.2f}] (bootstrap over {len(s.per_speaker)} speakers), "
             f"{len(s.per_utterance)} utterances.", "", head, row("**total**", t)]
    if s.missing:
        lines[3:3] = [f"{len(s.missing)} reference utterance(s) have no hypothesis and are "
                      f"scored as all deletions: {', '.join(s.missing[:20])}"
                      f"{' ...' if len(s.missing) > 20 else ''}", ""]
    lines += [row(k, v) for k, v in sorted(s.per_speaker.items())]
    lines += ["", "## Most frequent substitutions (ref → hyp)", ""]
    lines += [f"- `{r}` → `{h}`: {n}" for (r, h), n in s.confusions()] or ["- none"]
    lines += ["", "## Most frequent insertions", ""]
    lines += [f"- `{h}`: {n}" for h, n in s.inserted()] or ["- none"]
    lines += ["", "## Most frequent deletions", ""]
    lines += [f"- `{r}`: {n}" for r, n in s.deleted()] or ["- none"]
    lines += ["", f"## The {worst} utterances with most errors", ""]
    ranked = sorted(s.per_utterance.items(), key=lambda kv: (-kv[1].errors, kv[0]))[:worst]
    for utt, c in ranked:
        ops = s.alignments[utt]
        width = [max(len(r or "*"), len(h or "*")) for _, r, h in ops]
        ref = " ".join((r or "*" * w).ljust(w) for (_, r, _), w in zip(ops, width, strict=True))
        hyp = " ".join((h or "*" * w).ljust(w) for (_, _, h), w in zip(ops, width, strict=True))
        tags = " ".join((tag if tag != "C" else "").ljust(w)
                        for (tag, _, _), w in zip(ops, width, strict=True))
        lines += [f"{utt}: {c.errors} errors ({c.sub} S, {c.dele} D, {c.ins} I)", "```",
                  f"REF: {ref}", f"HYP: {hyp}", f"     {tags}".rstrip(), "```", ""]
    return "\n".join(lines) + "\n"


def write_score(s: Score, folder: str | Path, title: str, json_path: str | Path | None = None,
                seed: int = 0) -> None:
    """Write ``report.md`` and ``scores.json`` (or the JSON to ``json_path``)."""
    folder = Path(folder)
    atomic_write_text(folder / "report.md", report(s, title, seed=seed))
    atomic_write_text(Path(json_path) if json_path else folder / "scores.json",
                      json.dumps(s.as_dict(seed=seed), indent=1))


def read_text(path: str | Path) -> dict[str, list[str]]:
    """Read a Kaldi ``text`` file ('<id> tok tok ...') or an sclite ``trn`` file
    ('tok tok ... (<id>)'); the format is recognised per file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    lines = [(n, line) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(),
                                                1) if line.strip()]
    trn = bool(lines) and all(line.rstrip().endswith(")") and "(" in line for _, line in lines)
    out: dict[str, list[str]] = {}
    for n, line in lines:
        if trn:
            body, _, rest = line.rstrip().rpartition("(")
            utt, tokens = rest[:-1].strip(), body.split()
        else:
            utt, *tokens = line.split()
        if not utt:
            raise DataError(path, "no utterance id", n)
        if utt in out:
            raise DataError(path, f"utterance {utt!r} appears twice", n)
        out[utt] = tokens
    return out


def write_text(path: str | Path, entries: Mapping[str, Sequence[str]]) -> None:
    """Write a Kaldi ``text`` file, sorted by utterance id."""
    atomic_write_text(path, "".join(f"{k} {' '.join(v)}".rstrip() + "\n"
                                    for k, v in sorted(entries.items())))


def write_trn(path: str | Path, entries: Mapping[str, Sequence[str]]) -> None:
    """Write an sclite ``trn`` file: 'token token ... (utterance-id)' per line."""
    atomic_write_text(path, "".join(f"{' '.join(v)} ({k})\n" for k, v in sorted(entries.items())))
