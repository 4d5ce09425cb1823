"""Lexicon constraint: a word list as a prefix trie over the model's tokens, compiled into
the automaton the beam search steps through, so hypotheses spell only known words,
separated by single word-separator tokens."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from recog.data.utterance import DataError
from recog.decode.automaton import TokenAutomaton


def lexicon_automaton(words: Iterable[Sequence[str]], tokens: Sequence[str],
                      separator: str = " ", source: str | Path = "<lexicon>"
                      ) -> TokenAutomaton:
    """Trie of ``words`` (each a sequence of model tokens); state 0 = start of the line.
    A word holding a token the model lacks is left out; none usable is a DataError."""
    index = {t: i for i, t in enumerate(tokens) if i > 0}
    if separator not in index:
        raise DataError(source, f"the word separator {separator!r} is not a model token")
    sep = index[separator]
    children: list[dict[int, int]] = [{}]
    word_end = [False]
    for word in words:
        if not word or any(t not in index or t == separator for t in word):
            continue
        node = 0
        for t in word:
            c = index[t]
            if c not in children[node]:
                children[node][c] = len(children)
                children.append({})
                word_end.append(False)
            node = children[node][c]
        word_end[node] = True
    if len(children) == 1:
        raise DataError(source, "no word of the lexicon can be spelt with the model's tokens")
    after_sep = len(children)  # the root again, but a line may not end there
    nxt = np.full((after_sep + 1, len(tokens)), -1, dtype=np.int64)
    for node, kids in enumerate(children):
        for c, child in kids.items():
            nxt[node, c] = child
        if word_end[node]:
            nxt[node, sep] = after_sep
    nxt[after_sep] = nxt[0]
    nxt[:, 0] = np.arange(after_sep + 1)
    final = torch.tensor([0.0 if end or i == 0 else float("-inf")
                          for i, end in enumerate([*word_end, False])])
    return TokenAutomaton(torch.from_numpy(nxt), torch.zeros(after_sep + 1, len(tokens)),
                          final, 0)


def read_word_list(path: str | Path) -> list[str]:
    """Words of a word list file, one per line (blank lines ignored)."""
    path = Path(path)
    try:
        words = [w.strip() for w in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read the word list: {e}") from None
    for n, w in enumerate(words, 1):
        if w and any(c.isspace() for c in w):
            raise DataError(path, f"one word per line, got {w!r}", n)
    return [w for w in words if w]


def load_lexicon(path: str | Path, tokens: Sequence[str], separator: str = " "
                 ) -> TokenAutomaton:
    """A word list file (characters as tokens) compiled for the model's tokens."""
    return lexicon_automaton((list(w) for w in read_word_list(path)), tokens, separator, path)
