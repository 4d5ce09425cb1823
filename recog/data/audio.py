"""Audio file access, through soundfile in this one place (NIST SPHERE, RIFF, FLAC, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from recog.data.utterance import DataError

NIST_HEADER_BYTES = 1024
_SAMPLE_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4,
                 "DOUBLE": 8, "ULAW": 1, "ALAW": 1}


@dataclass(frozen=True)
class AudioInfo:
    """What a reader needs to know of an audio file before it trusts it."""

    frames: int
    rate: int
    channels: int
    subtype: str  # soundfile's name of the sample format: PCM_16, PCM_24, FLOAT, ...


def audio_info(path: str | Path) -> AudioInfo:
    """Samples, rate, channels and sample format of a file, checking that it is whole."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "audio file is missing")
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises several types for unreadable files
        raise DataError(path, f"unreadable audio: {e}") from None
    if info.format == "NIST":
        declared = _nist_header_int(path, "sample_count")
        width = _nist_header_int(path, "sample_n_bytes") or _SAMPLE_BYTES.get(info.subtype, 2)
        available = (path.stat().st_size - NIST_HEADER_BYTES) // (width * max(info.channels, 1))
        if declared is not None and available < declared:
            raise DataError(
                path, f"truncated NIST SPHERE file: header declares {declared} samples, "
                f"the file holds {available}"
            )
    if info.frames <= 0:
        raise DataError(path, "audio file holds no samples")
    return AudioInfo(info.frames, info.samplerate, info.channels, info.subtype)


def _nist_header_int(path: Path, field: str) -> int | None:
    """An integer field of a NIST SPHERE header ('name -i value'), None when absent."""
    with path.open("rb") as f:
        header = f.read(NIST_HEADER_BYTES).decode("ascii", "replace")
    for n, line in enumerate(header.splitlines(), 1):
        parts = line.split()
        if len(parts) == 3 and parts[0] == field:
            try:
                return int(parts[2])
            except ValueError:
                raise DataError(path, f"NIST header field {field} is not an integer: "
                                f"{parts[2]!r}", n) from None
        if parts[:1] == ["end_head"]:
            break
    return None


def read_audio(path: str | Path, offset: float = 0.0, duration: float | None = None
               ) -> tuple[np.ndarray, int]:
    """Read a file (or the segment from ``offset`` for ``duration`` seconds) as float32 mono
    samples in [-1, 1] (channels averaged) and its sample rate."""
    try:
        with sf.SoundFile(str(path)) as f:
            rate, total = f.samplerate, f.frames
            start = round(offset * rate)
            frames = total - start if duration is None else round(duration * rate)
            if offset or duration is not None:
                if start + frames > total:
                    raise DataError(path, f"segment {offset:.3f}+{duration}s runs past the end "
                                    f"of the audio ({total / rate:.3f}s)")
                f.seek(start)
            data = f.read(frames, dtype="float32", always_2d=True)
    except DataError:
        raise
    except Exception as e:
        raise DataError(path, f"unreadable audio: {e}") from None
    if data.shape[0] == 0:
        raise DataError(path, "audio file holds no samples")
    if not np.isfinite(data).all():
        bad = int(np.flatnonzero(~np.isfinite(data).all(axis=1))[0])
        raise DataError(path, f"audio holds a non-finite sample (NaN or inf) at sample {bad}")
    return data.mean(axis=1), rate
