"""Isolated-word decoding: each word's score is its exact CTC probability (checked against a
brute-force sum over every alignment), the chosen word is the likeliest of the list, and no
second word can ever be inserted."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from recog.data.utterance import DataError
from recog.decode import DecodeOptions, make_decoder

TOKENS = ("<blk>", "a", "b", "n", "o")
WORDS = ["ab", "ba", "no", "on", "abba", "a"]


def _collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    out = [k for i, k in enumerate(path) if k and (i == 0 or path[i - 1] != k)]
    return tuple(out)


def _brute_force(log_probs: torch.Tensor, n: int, word: str,
                 tokens: tuple[str, ...] = TOKENS) -> float:
    """log of the summed probability of every length-n path collapsing to ``word`` (the
    word's token when it is one, else its letters)."""
    target = (tokens.index(word),) if word in tokens else tuple(tokens.index(c) for c in word)
    lp = log_probs[:n].double()
    total = 0.0
    for path in itertools.product(range(len(tokens)), repeat=n):
        if _collapse(path) == target:
            total += math.exp(sum(float(lp[t, k]) for t, k in enumerate(path)))
    return math.log(total) if total > 0 else float("-inf")


def _lexicon(tmp_path: Path, words: list[str] = WORDS) -> str:
    path = tmp_path / "words.txt"
    path.write_text("\n".join(words) + "\n")
    return str(path)


def test_scores_are_exact_ctc_probabilities(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    log_probs = torch.randn(3, 6, len(TOKENS), generator=g).log_softmax(-1)
    lengths = torch.tensor([6, 5, 3])
    decoder = make_decoder(DecodeOptions(method="isolated_word", lexicon=_lexicon(tmp_path)),
                           TOKENS)
    scores = decoder.scores(log_probs, lengths)
    for b, n in enumerate(lengths.tolist()):
        for w, word in enumerate(decoder.words):
            expected = _brute_force(log_probs[b], n, word)
            if math.isinf(expected):  # "abba" cannot fit 3 frames
                assert math.isinf(float(scores[b, w]))
            else:
                assert float(scores[b, w]) == pytest.approx(expected, abs=1e-4)
        best = max(decoder.words, key=lambda word: _brute_force(log_probs[b], n, word))
        assert "".join(TOKENS[k] for k in decoder(log_probs, lengths)[b]) == best


def test_never_more_than_one_word(tmp_path: Path) -> None:
    # frames that spell "no" then "on": greedy reads "noon", which is no word of the list
    frames = [3, 0, 4, 0, 4, 0, 3]
    log_probs = torch.full((1, len(frames), len(TOKENS)), -8.0)
    for t, k in enumerate(frames):
        log_probs[0, t, k] = 0.0
    log_probs = log_probs.log_softmax(-1)
    lengths = torch.tensor([len(frames)])
    greedy = make_decoder(DecodeOptions(method="greedy"), TOKENS)
    assert "".join(TOKENS[k] for k in greedy(log_probs, lengths)[0]) == "noon"
    decoder = make_decoder(DecodeOptions(method="isolated_word", lexicon=_lexicon(tmp_path),
                                         nbest=3), TOKENS)
    nbest = decoder.nbest(log_probs, lengths)[0]
    words = ["".join(TOKENS[k] for k in h.tokens) for h in nbest]
    assert len(words) == 3 and all(w in WORDS for w in words)
    assert nbest[0].score >= nbest[1].score >= nbest[2].score


def test_a_word_the_model_cannot_spell_names_the_lexicon(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"words\.txt: word\(s\) \['zebra'\]"):
        make_decoder(DecodeOptions(method="isolated_word",
                                   lexicon=_lexicon(tmp_path, ["ab", "zebra"])), TOKENS)
    with pytest.raises(ValueError, match="set it"):
        make_decoder(DecodeOptions(method="isolated_word"), TOKENS)


def test_a_word_that_is_a_token_is_that_one_token(tmp_path: Path) -> None:
    tokens = ("<blk>", "no", "on", "yes")  # a word model: each word one token
    g = torch.Generator().manual_seed(1)
    log_probs = torch.randn(2, 5, len(tokens), generator=g).log_softmax(-1)
    lengths = torch.tensor([5, 2])
    decoder = make_decoder(DecodeOptions(method="isolated_word", lexicon=_lexicon(
        tmp_path, ["yes", "no", "on"])), tokens)
    assert decoder.spellings == [[1], [2], [3]]
    scores = decoder.scores(log_probs, lengths)
    for b, n in enumerate(lengths.tolist()):
        for w, word in enumerate(decoder.words):
            expected = _brute_force(log_probs[b], n, word, tokens)
            assert float(scores[b, w]) == pytest.approx(expected, abs=1e-4)
