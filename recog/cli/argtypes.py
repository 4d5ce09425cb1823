"""argparse types for the argparse verbs (recog-transcribe, recog-serve): a bad number is
a usage error naming the flag, not a crash or a silent other meaning."""

from __future__ import annotations

import argparse


def _whole(text: str, low: int, high: float, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{what}, not {text!r}")
    return value


def at_least_one(text: str) -> int:
    """A whole number >= 1 (a beam width, a count, a batch size)."""
    return _whole(text, 1, float("inf"), "a whole number >= 1")


def port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535."""
    return _whole(text, 0, 65535, "a TCP port from 0 to 65535")
