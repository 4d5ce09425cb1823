"""The record every corpus reader produces, its JSONL form, and the bad-input errors
(a file's and a configuration key's)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recog.atomic import atomic_write_text

__all__ = ["ConfigError", "Corpus", "DataError", "Rejections", "Utterance", "checked_id",
           "read_json", "read_jsonl", "write_jsonl"]


@dataclass(frozen=True)
class Utterance:
    """One utterance (or one handwritten line): where it lives and what it says."""

    id: str
    speaker: str
    source: str
    tokens: tuple[str, ...]
    text: str = ""
    extra: dict = field(default_factory=dict, compare=False)  # a training copy's draws
    offset: float = 0.0  # seconds into the source where a segment starts (Kaldi segments)
    duration: float | None = None  # the segment's length in seconds (None: to the end)

    def to_json(self) -> str:
        d = asdict(self)
        d["tokens"] = list(self.tokens)
        extra = d.pop("extra")
        for key, default in (("offset", 0.0), ("duration", None)):  # only a segment's
            if d[key] == default:
                del d[key]
        return json.dumps({**d, **extra}, ensure_ascii=False)


class DataError(ValueError):
    """Bad input: says which file (and line) and what is wrong with it."""

    def __init__(self, path: str | Path, reason: str, line: int | None = None):
        self.path, self.reason, self.line = str(path), reason, line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")

    def as_dict(self) -> dict:
        return {"path": self.path, "line": self.line, "reason": self.reason}


class ConfigError(DataError):
    """A configuration that cannot run: names the key (where a file error names the file)."""


class Rejections:
    """Collects bad items: raises at the first one unless ``skip_bad``, else keeps a list."""

    def __init__(self, skip_bad: bool = False):
        self.skip_bad = skip_bad
        self.items: list[DataError] = []

    def add(self, error: DataError) -> None:
        if not self.skip_bad:
            raise error
        self.items.append(error)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class Corpus:
    """What a corpus reader returns: utterances per split, and the items it rejected."""

    root: Path
    splits: dict[str, list[Utterance]]
    rejected: list[DataError] = field(default_factory=list)


_KNOWN = {"id", "speaker", "source", "tokens", "text", "offset", "duration"}


def read_json(path: str | Path, expect: type, keys: tuple[str, ...] = ()) -> Any:
    """A JSON file recog wrote (``history.json``, ``skipped.json``, ``summary.json``):
    a value of type ``expect`` (for a list: objects with ``keys``). Anything else (damaged,
    truncated, nested too deeply) is a DataError naming the file and line."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(path, f"not JSON: {e.msg} (column {e.colno}); delete it or rerun the "
                        "stage that writes it", e.lineno) from None
    except (OSError, UnicodeDecodeError, RecursionError) as e:
        raise DataError(path, f"unreadable ({type(e).__name__}: {e}); delete it or rerun the "
                        "stage that writes it") from None
    items = data if isinstance(data, list) else []
    if not isinstance(data, expect) or not all(
            isinstance(d, dict) and all(k in d for k in keys) for d in items):
        what = f"a JSON {expect.__name__}" + (f" of objects with {', '.join(keys)}" if keys
                                              else "")
        raise DataError(path, f"not what recog writes there ({what}); delete it or rerun the "
                        "stage that writes it")
    return data


def checked_id(uid: object, path: str | Path, line: int | None = None) -> str:
    """An utterance id as Kaldi ``text``, ``trn`` and ``utt2spk`` files need it: a non-empty
    string without whitespace (a space or newline would split or add a line there)."""
    if not isinstance(uid, str) or not uid:
        raise DataError(path, "'id' must be a non-empty string", line)
    if any(c.isspace() for c in uid):
        raise DataError(path, f"utterance id {uid!r} holds whitespace, which would corrupt "
                        "the Kaldi text and trn files written from it; rename it", line)
    return uid


def json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each non-blank line of a JSONL file, for both readers of
    them (recog's own splits and users' manifests); a line that is not UTF-8, not JSON,
    nested too deeply or not an object is a DataError naming the file and line."""
    for n, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(path, f"not UTF-8 text (byte {raw[e.start]:#04x} at column "
                            f"{e.start + 1})", n) from None
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, f"not a JSON object (not JSON: {e.msg})", n) from None
        except RecursionError:
            raise DataError(path, "not a JSON object: nested too deeply", n) from None
        if not isinstance(d, dict):
            raise DataError(path, f"not a JSON object but a {type(d).__name__}", n)
        yield n, d


def read_jsonl(path: str | Path) -> list[Utterance]:
    """Read utterances written by ``write_jsonl`` (or by hand); errors name file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such manifest file")
    out = []
    for n, d in json_lines(path):
        missing = [k for k in ("id", "source", "tokens") if k not in d]
        if missing:
            raise DataError(path, f"missing field(s) {', '.join(missing)}", n)
        tokens = d["tokens"]
        if isinstance(tokens, str):
            tokens = tokens.split()
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise DataError(path, "'tokens' must be a list of non-empty strings or one string",
                            n)
        if not tokens:
            raise DataError(path, "'tokens' is empty: an utterance needs a transcription", n)
        out.append(
            Utterance(
                id=checked_id(d["id"], path, n),
                speaker=str(d.get("speaker", d["id"])),
                source=str(d["source"]),
                tokens=tuple(tokens),
                text=str(d.get("text", "")),
                extra={k: v for k, v in d.items() if k not in _KNOWN},
                offset=float(d.get("offset", 0.0)),
                duration=None if d.get("duration") is None else float(d["duration"]),
            )
        )
    return out


def write_jsonl(path: str | Path, utterances: Iterable[Utterance]) -> None:
    """Write one JSON object per utterance, atomically."""
    atomic_write_text(path, "".join(u.to_json() + "\n" for u in utterances))
