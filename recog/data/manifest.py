"""Bring-your-own corpora: JSONL manifests and Kaldi data directories, read into ``Utterance``
records. Speech or ink; tokens from characters, whitespace-separated phones or a token list.

A JSONL manifest holds one object per utterance: ``id``, ``source`` (an audio file, or an
IAM-OnDB XML / JSON stroke / InkML file), ``text`` or ``tokens`` (an InkML source may leave
both out: its ``truth`` annotation is the text), optional ``speaker`` (or ``writer``),
``offset`` and ``duration`` (seconds). Relative paths are relative to the
manifest's folder. A Kaldi data directory holds ``wav.scp`` (file paths, no pipes), ``text``,
``utt2spk`` and optionally ``segments``; relative paths there are relative to the current
folder, as in Kaldi.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recog.data.audio import audio_info
from recog.data.iamondb import read_line_strokes
from recog.data.inkml import read_inkml, read_inkml_strokes
from recog.data.limits import check_points
from recog.data.utterance import DataError, Utterance, checked_id, json_lines

TOKENIZERS = ("chars", "phones", "words", "list")


@dataclass(frozen=True)
class Tokenizer:
    """How a transcript becomes tokens: ``chars`` (spaces kept), ``phones`` or ``words``
    (split on whitespace: scored as PER, or as CER and WER), or ``list`` (split on
    whitespace, each token must be in ``token_list``)."""

    kind: str = "phones"
    token_list: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {self.kind!r}; known: {', '.join(TOKENIZERS)}")
        if self.kind == "list" and not self.token_list:
            raise ValueError("tokenizer 'list' needs a token list (corpus.token_list)")

    def __call__(self, text: str | Sequence[str], path: Path, line: int) -> tuple[str, ...]:
        if isinstance(text, str):
            tokens = tuple(" ".join(text.split())) if self.kind == "chars" else tuple(text.split())
        elif isinstance(text, list) and all(isinstance(t, str) and t for t in text):
            tokens = tuple(text)
        else:
            raise DataError(path, "text must be a string and tokens a list of non-empty "
                            "strings", line)
        if self.kind == "list":
            known = set(self.token_list)
            unknown = sorted({t for t in tokens if t not in known})
            if unknown:
                raise DataError(path, f"token(s) {unknown} not in the token list", line)
        if not tokens:
            raise DataError(path, "empty transcription", line)
        return tokens


def read_token_list(path: str | Path) -> tuple[str, ...]:
    """A token list file: one token per line (blank lines and duplicates are errors)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such token list file")
    tokens = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        token = line.strip()
        if not token or token in tokens:
            raise DataError(path, "empty or repeated token", n)
        tokens.append(token)
    return tuple(tokens)


FRAME_SHIFT = 0.01  # seconds a segment may run past its audio's end (one feature frame)


def _check_source(source: Path, where: Path, line: int, modality: str) -> float | None:
    """Check that the source file exists (and is whole audio); the audio's duration in
    seconds (soundfile's header, no decoding), None for ink."""
    if not source.is_file():
        raise DataError(where, f"{source}: no such file", line)
    if modality != "speech":
        return None
    try:
        info = audio_info(source)
    except DataError as e:
        raise DataError(where, f"{source}: {e.reason}", line) from None
    return info.frames / info.rate


def _check_within(segment: dict, source: Path, seconds: float | None, where: Path,
                  line: int) -> None:
    """A segment (offset, duration) must end within its audio, give or take a frame shift."""
    if seconds is None or not segment:
        return
    end = segment.get("offset", 0.0) + segment.get("duration", 0.0)
    if end > seconds + FRAME_SHIFT:
        raise DataError(where, f"segment ends at {end:.3f}s, past the end of {source} "
                        f"({seconds:.3f}s)", line)


def _segment(d: dict, path: Path, line: int) -> dict:
    """The optional offset/duration of a manifest object, checked."""
    out = {}
    for key in ("offset", "duration"):
        if d.get(key) is None:
            continue
        value = d[key]
        if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise DataError(path, f"{key} must be a number of seconds >= 0, not {value!r}", line)
        out[key] = float(value)
    return out


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 text file; a line that is not UTF-8 is an error."""
    for n, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            yield n, raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(path, f"not UTF-8 text (byte {raw[e.start]:#04x} at column "
                            f"{e.start + 1})", n) from None


def read_manifest(path: str | Path, tokenizer: Tokenizer, modality: str = "speech"
                  ) -> list[Utterance]:
    """The utterances of a JSONL manifest; a bad line is an error naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such manifest file")
    out, seen = [], set()
    for n, d in json_lines(path):
        missing = [k for k in ("id", "source") if k not in d]
        inkml = modality == "ink" and str(d.get("source", "")).lower().endswith(".inkml")
        if "text" not in d and "tokens" not in d and not inkml:
            missing.append("text or tokens")
        if missing:
            raise DataError(path, f"missing field(s): {', '.join(missing)}", n)
        uid = checked_id(d["id"], path, n)
        if uid in seen:
            raise DataError(path, f"utterance id {uid!r} appears twice", n)
        seen.add(uid)
        source = _resolved(path.parent / str(d["source"]), path, n)
        seconds = _check_source(source, path, n, modality)
        segment = _segment(d, path, n)
        _check_within(segment, source, seconds, path, n)
        if "text" not in d and "tokens" not in d:  # an InkML source: its truth annotation
            d["text"] = _inkml_truth(source, path, n)
        tokens = tokenizer(d["tokens"] if "tokens" in d else d["text"], path, n)
        text = d.get("text") if isinstance(d.get("text"), str) else " ".join(tokens)
        speaker = d.get("speaker", d.get("writer", uid))
        out.append(Utterance(uid, str(speaker), str(source), tokens, text, **segment))
    return out


def _resolved(source: Path, where: Path, line: int | None) -> Path:
    """``source`` made absolute through its links; a link loop is an error at ``where``."""
    try:
        return source.resolve()
    except (RuntimeError, OSError) as e:  # Python < 3.13 raises RuntimeError on a loop
        raise DataError(where, f"{source}: cannot be resolved ({e}): a symbolic link loop?",
                        line) from None


def _inkml_truth(source: Path, where: Path, line: int) -> str:
    """The transcription an InkML file carries (its ``truth`` annotation)."""
    truth = read_inkml(source).truth
    if not truth:
        raise DataError(where, f"{source}: no text or tokens, and the InkML file has no "
                        'annotation type="truth"', line)
    return truth


def _kaldi_table(path: Path, min_fields: int) -> dict[str, tuple[list[str], int]]:
    """A Kaldi table file: key -> (fields after the key, line number)."""
    if not path.is_file():
        raise DataError(path, "missing file of the Kaldi data directory")
    table: dict[str, tuple[list[str], int]] = {}
    for n, line in _lines(path):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 1 + min_fields:
            raise DataError(path, f"expected a key and {min_fields} field(s)", n)
        if fields[0] in table:
            raise DataError(path, f"key {fields[0]!r} appears twice", n)
        table[fields[0]] = (fields[1:], n)
    return table


def read_kaldi_dir(folder: str | Path, tokenizer: Tokenizer) -> list[Utterance]:
    """The utterances of a Kaldi data directory (``wav.scp`` with file paths, ``text``,
    ``utt2spk``, optional ``segments``), in the order of ``text``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "no such Kaldi data directory")
    wav_scp = folder / "wav.scp"
    wavs = _kaldi_table(wav_scp, 1)
    texts = _kaldi_table(folder / "text", 0)
    spk = _kaldi_table(folder / "utt2spk", 1)
    segments = _kaldi_table(folder / "segments", 3) if (folder / "segments").is_file() else None
    for key, (fields, n) in wavs.items():
        if fields[-1] == "|" or len(fields) > 1:
            raise DataError(wav_scp, f"{key}: only file paths are supported, not commands", n)
    # every utterance the other tables name must have a transcript: none is dropped unsaid
    utt_tables = [(folder / "utt2spk", spk), (folder / "segments", segments)
                  if segments is not None else (wav_scp, wavs)]
    for path, table in utt_tables:
        for uid, (_, n) in table.items():
            if uid not in texts:
                raise DataError(path, f"utterance {uid!r} has no line in "
                                f"{folder / 'text'} (Kaldi's fix_data_dir.sh would drop it)",
                                n)
    out, seconds = [], {}  # recording -> its duration, read once
    for uid, (words, n) in texts.items():
        segment: dict = {}
        seg_line = 0
        if segments is not None:
            if uid not in segments:
                raise DataError(folder / "segments", f"no segment for utterance {uid!r}")
            fields, seg_line = segments[uid]
            try:
                rec, t0, t1 = fields[0], float(fields[1]), float(fields[2])
            except ValueError:
                raise DataError(folder / "segments", "start and end must be seconds",
                                seg_line) from None
            if len(fields) != 3:
                raise DataError(folder / "segments", "expected: utterance recording start end",
                                seg_line)
            if not (0 <= t0 < t1 and math.isfinite(t1)):
                raise DataError(folder / "segments", f"bad segment {t0}..{t1}", seg_line)
            segment = {"offset": t0, "duration": t1 - t0}
        else:
            rec = uid
        if rec not in wavs:
            raise DataError(wav_scp, f"no recording {rec!r} (for utterance {uid!r})")
        (wav,), wav_line = wavs[rec]
        source = _resolved(Path(wav), wav_scp, wav_line)
        if rec not in seconds:
            seconds[rec] = _check_source(source, wav_scp, wav_line, "speech")
        _check_within(segment, source, seconds[rec], folder / "segments", seg_line)
        if uid not in spk:
            raise DataError(folder / "utt2spk", f"no speaker for utterance {uid!r}")
        tokens = tokenizer(" ".join(words), folder / "text", n)
        out.append(Utterance(uid, spk[uid][0][0], str(source), tokens, " ".join(words),
                             **segment))
    return out


def read_json_strokes(path: str | Path) -> list[np.ndarray]:
    """A JSON stroke file: ``{"strokes": [[[x, y, t], ...], ...]}`` (``t`` optional, in
    seconds; 100 points/s assumed without it), as (N, 3) arrays like ``read_line_strokes``.
    Coordinates as IAM-OnDB and screens have them: x grows to the right, y downward; points
    and strokes in writing order (a time that goes back is an error naming the point)."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "stroke file is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"not JSON: {e}") from None
    except RecursionError:
        raise DataError(path, "not JSON this reader accepts: nested too deeply") from None
    strokes = d.get("strokes") if isinstance(d, dict) else None
    if not isinstance(strokes, list) or not strokes:
        raise DataError(path, "expected an object with a non-empty list 'strokes'")
    out, count = [], 0
    for k, stroke in enumerate(strokes):
        try:
            a = np.asarray(stroke, dtype=np.float64)
        except (TypeError, ValueError):
            a = np.zeros((0, 0))
        if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] not in (2, 3):
            raise DataError(path, f"stroke {k} must be a non-empty list of [x, y] or [x, y, t]")
        if a.shape[1] == 2:
            a = np.column_stack([a, (count + np.arange(len(a))) / 100.0])
        elif not np.isfinite(a).all():
            raise DataError(path, f"stroke {k}: coordinates or times that are not numbers")
        start = out[-1][-1, 2] if out else -np.inf
        back = np.flatnonzero(np.diff(np.concatenate([[start], a[:, 2]])) < 0)
        if len(back):  # the pen features follow the writing order: it must be the file's
            i = int(back[0])
            raise DataError(path, f"stroke {k}, point {i}: time {a[i, 2]:g} is before the "
                            "previous point's; give points (and strokes) in the order they "
                            "were written")
        count += len(a)
        out.append(a)
    return out


INK_SUFFIXES = (".xml", ".json", ".inkml")


def read_strokes(path: str | Path) -> list[np.ndarray]:
    """The strokes of an ink file: IAM-OnDB XML, the JSON stroke format (``.json``) or W3C
    InkML (``.inkml``)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        strokes = read_json_strokes(path)
    elif suffix == ".inkml":
        strokes = read_inkml_strokes(path)
    else:
        strokes = read_line_strokes(path)
    check_points(path, sum(len(s) for s in strokes))
    return strokes
