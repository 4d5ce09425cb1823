"""argparse types for the argparse verbs (recog-transcribe, recog-serve): a bad number is
a usage error naming the flag, not a crash or a silent other meaning."""

from __future__ import annotations

import argparse


def at_least_one(text: str) -> int:
    """A whole number >= 1 (a beam width, a count, a batch size)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a whole number >= 1, not {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port from 0 to 65535, not {text!r}")
    return value
