"""Lexicon-constrained beam search: only known words, and the best such labelling."""

import itertools

import pytest
import torch

from recog.data.utterance import DataError
from recog.decode.beam import BeamOptions, prefix_beam_search
from recog.decode.lexicon import lexicon_automaton, load_lexicon
from tests.test_beam import brute_force

TOKENS = ["<blk>", " ", "a", "b"]
WORDS = ["ab", "b", "ba"]


def _spells_known_words(tokens: list[int]) -> bool:
    text = "".join(TOKENS[c] for c in tokens)
    return text == "" or all(w in WORDS for w in text.split(" ")) and "  " not in text \
        and not text.startswith(" ") and not text.endswith(" ")


def test_trie_accepts_exactly_the_words() -> None:
    lex = lexicon_automaton([list(w) for w in WORDS], TOKENS)
    for n in range(6):
        for seq in itertools.product(range(1, 4), repeat=n):
            state = 0
            for c in seq:
                state = int(lex.next[state, c]) if state >= 0 else -1
            accepted = state >= 0 and float(lex.final[state]) == 0.0
            text = "".join(TOKENS[c] for c in seq)
            assert accepted == (text == "" or all(w in WORDS for w in text.split(" ")))


@pytest.mark.parametrize("seed", range(4))
def test_constrained_best_is_brute_force_best_among_known_words(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    lp = (2 * torch.randn(1, 6, 4, generator=g, dtype=torch.float64)).log_softmax(-1)
    lex = lexicon_automaton([list(w) for w in WORDS], TOKENS)
    hyps = prefix_beam_search(lp, torch.tensor([6]), BeamOptions(beam=400, nbest=400,
                                                                 blank_skip=1.0), lexicon=lex)
    exact = {k: v for k, v in brute_force(lp[0]).items() if _spells_known_words(list(k))}
    assert tuple(hyps[0][0].tokens) == max(exact, key=exact.get)
    for h in hyps[0]:
        assert h.score == pytest.approx(exact[tuple(h.tokens)], abs=1e-5)


def test_word_list_errors(tmp_path) -> None:
    bad = tmp_path / "words.txt"
    bad.write_text("ab\nx y\n")
    with pytest.raises(DataError, match="one word per line") as e:
        load_lexicon(bad, TOKENS)
    assert e.value.line == 2
    bad.write_text("xyz\n")
    with pytest.raises(DataError, match="no word of the lexicon"):
        load_lexicon(bad, TOKENS)


def test_a_beam_wider_than_the_allowed_prefixes_keeps_only_allowed_ones() -> None:
    # beam 64 > the prefixes the lexicon allows: the beam fills up with dead hypotheses,
    # which must stay dead rather than spell what the lexicon forbids
    g = torch.Generator().manual_seed(0)
    lp = (3 * torch.randn(8, 30, 4, generator=g)).log_softmax(-1)
    lex = lexicon_automaton([list(w) for w in WORDS], TOKENS)
    for hyps in prefix_beam_search(lp, torch.full((8,), 30), BeamOptions(beam=64, nbest=64),
                                   lexicon=lex):
        for h in hyps:
            words = "".join(TOKENS[c] for c in h.tokens).split(" ")
            assert all(w in WORDS for w in words[:-1]), words
            assert any(w.startswith(words[-1]) for w in WORDS), words
