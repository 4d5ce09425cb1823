"""Audio file access, through soundfile in this one place (NIST SPHERE, RIFF, FLAC, ...).

Limits bound memory and time before any samples are read (``recog.data.limits``: the
sample-rate range and ``data.max_seconds``, checked from the header). Resampling from a
rate whose ratio to the target does not reduce to small numbers is done from the nearest
multiple of 50 Hz (``resampler_rate``: a pitch error of at most 0.6 %), so that 22,051 Hz
costs what 22,050 Hz costs instead of a polyphase filter of 16,000 x 22,051 taps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from recog.data.limits import check_audio
from recog.data.utterance import DataError

NIST_HEADER_BYTES = 1024
_MAX_REDUCED_RATE = 1_000  # a rate / gcd(rate, target) beyond this: resample from a rounder one
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
    check_audio(path, info.samplerate, info.frames)
    return AudioInfo(info.frames, info.samplerate, info.channels, info.subtype)



def resampler_rate(rate: int, target: int) -> int:
    """The rate to resample from so that the cost stays bounded: ``rate`` itself when both
    rates divided by their gcd are small (the polyphase filter has about their product of
    taps), else the nearest multiple of 50 Hz."""
    if max(rate, target) // math.gcd(rate, target) <= _MAX_REDUCED_RATE:
        return rate
    return max(50, round(rate / 50) * 50)


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
            check_audio(path, rate, max(frames, 0))
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
