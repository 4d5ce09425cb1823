"""Input limits that bound memory and time before work starts: the sample rates accepted,
the longest audio item (``data.max_seconds``) and the most pen points in one ink item
(``data.max_points``). A reader checks an item against them from its header (or its parsed
points) and refuses it with a ``DataError`` naming the file and the setting to change.

The two maxima are process-wide settings (``set_limits``; the console verbs apply the
``data`` config group), so that every reader, ``recog-transcribe`` included, applies them.
"""

from __future__ import annotations

from pathlib import Path

from recog.data.utterance import DataError

MIN_RATE, MAX_RATE = 4_000, 192_000  # Hz: telephone speech to studio recordings
MAX_SECONDS = 600.0  # default data.max_seconds (a TIMIT sentence is ~3 s)
MAX_POINTS = 200_000  # default data.max_points (an IAM-OnDB line has a few thousand)
_limits = {"max_seconds": MAX_SECONDS, "max_points": MAX_POINTS}


def set_limits(max_seconds: float = MAX_SECONDS, max_points: int = MAX_POINTS) -> None:
    """Set the longest audio item and the largest ink item accepted from now on."""
    if not max_seconds > 0 or not max_points > 0:
        raise ValueError(f"data.max_seconds and data.max_points must be positive, not "
                         f"{max_seconds} and {max_points}")
    _limits.update(max_seconds=float(max_seconds), max_points=int(max_points))


def check_audio(path: str | Path, rate: int, frames: int) -> None:
    """Refuse a sample rate outside [MIN_RATE, MAX_RATE] or an item longer than
    ``data.max_seconds``, before its samples are read."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise DataError(path, f"sample rate {rate} Hz is outside the supported "
                        f"{MIN_RATE}-{MAX_RATE} Hz; convert the file first (e.g. sox IN -r "
                        "16000 OUT)")
    seconds, limit = frames / rate, _limits["max_seconds"]
    if seconds > limit:
        raise DataError(path, f"{seconds:.1f} s of audio: longer than data.max_seconds="
                        f"{limit:g}; cut the recording into segments, or raise "
                        "data.max_seconds")


def check_points(path: str | Path, points: int) -> None:
    """Refuse an ink item of more than ``data.max_points`` pen points."""
    limit = _limits["max_points"]
    if points > limit:
        raise DataError(path, f"{points} pen points: more than data.max_points={limit}; "
                        "split the item, or raise data.max_points")
