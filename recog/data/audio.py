"""Audio file access, through soundfile in this one place (NIST SPHERE, RIFF, FLAC, ...)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from recog.data.utterance import DataError

NIST_HEADER_BYTES = 1024


def audio_frames(path: str | Path) -> tuple[int, int]:
    """Return (number of samples, sample rate), checking that the file is whole."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "audio file is missing")
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises several types for unreadable files
        raise DataError(path, f"unreadable audio: {e}") from None
    if info.format == "NIST":
        declared = _nist_sample_count(path)
        available = (path.stat().st_size - NIST_HEADER_BYTES) // (2 * info.channels)
        if declared is not None and available < declared:
            raise DataError(
                path, f"truncated NIST SPHERE file: header declares {declared} samples, "
                f"the file holds {available}"
            )
    if info.frames <= 0:
        raise DataError(path, "audio file holds no samples")
    return info.frames, info.samplerate


def _nist_sample_count(path: Path) -> int | None:
    with path.open("rb") as f:
        header = f.read(NIST_HEADER_BYTES).decode("ascii", "replace")
    for line in header.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "sample_count":
            return int(parts[2])
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
    return data.mean(axis=1), rate
