"""Lexicon-constrained beam search: only known words, and the best such labelling."""

import itertools
import math

import pytest
import torch

from recog.data.utterance import DataError
from recog.decode.beam import BeamOptions, prefix_beam_search
from recog.decode.lexicon import lexicon_automaton, load_lexicon
from tests.test_beam import brute_force

TOKENS = ["<blk>", " ", "a", "b"]
WORDS = ["ab", "b", "ba"]


def _spells_known_words(tokens: list[int]) -> bool:
    # spaces are free: any number of them, before, between and after the words
    return all(w in WORDS for w in "".join(TOKENS[c] for c in tokens).split(" ") if w)


def _accepted(lex, seq: tuple[int, ...]) -> bool:
    """Whether the automaton, stepped through ``seq`` from state 0, ends in a final state."""
    state = 0
    for c in seq:
        state = int(lex.next[state, c]) if state >= 0 else -1
    return state >= 0 and float(lex.final[state]) == 0.0


def test_trie_accepts_exactly_the_words() -> None:
    lex = lexicon_automaton(WORDS, TOKENS)
    for n in range(6):
        for seq in itertools.product(range(1, 4), repeat=n):
            assert _accepted(lex, seq) == _spells_known_words(list(seq))


def test_a_word_models_trie_takes_any_sequence_of_its_words() -> None:
    tokens = ["<blk>", "no", "on", "yes", "x"]  # word tokens, and one that is no word
    lex = lexicon_automaton(["yes", "no", "on"], tokens)
    for n in range(4):
        for seq in itertools.product(range(1, 5), repeat=n):
            assert _accepted(lex, seq) == (4 not in seq)


@pytest.mark.parametrize("seed", range(4))
def test_constrained_best_is_brute_force_best_among_known_words(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    lp = (2 * torch.randn(1, 6, 4, generator=g, dtype=torch.float64)).log_softmax(-1)
    lex = lexicon_automaton(WORDS, TOKENS)
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
    lex = lexicon_automaton(WORDS, TOKENS)
    for hyps in prefix_beam_search(lp, torch.full((8,), 30), BeamOptions(beam=64, nbest=64),
                                   lexicon=lex):
        for h in hyps:
            words = "".join(TOKENS[c] for c in h.tokens).split(" ")
            assert all(w in WORDS for w in words[:-1] if w), words
            assert any(w.startswith(words[-1]) for w in WORDS), words


def test_words_of_running_text_and_their_spellings() -> None:
    from recog.decode.lexicon import words_of

    assert words_of('"Rome\'s walls," she said: 1987 well-known -') == [
        "Rome's", "walls", "she", "said", "well-known"]
    tokens = ["<blk>", " ", ",", "1", "'", *"ROMESTromest"]
    lex = lexicon_automaton(["Rome's", "to"], tokens)

    def accepts(text: str) -> bool:
        state = 0
        for ch in text:
            state = int(lex.next[state, tokens.index(ch)])
            if state < 0:
                return False
        return float(lex.final[state]) == 0.0

    # lower, Capitalised and CAPITALS; digits and punctuation free between words only
    for text in ("rome's, to", "ROME'S to 11", "To Rome's,", "'to'", " 1,1 "):
        assert accepts(text), text
    for text in ("rome", "RoMe's", "tome", "tO", "t o"):
        assert not accepts(text), text


@pytest.mark.parametrize("seed", range(3))
def test_word_lm_scores_each_word_as_it_ends(seed: int) -> None:
    # every labelling's fused score = brute-force acoustic + gamma * the word bigram's
    # log-probability of its words (ARPA back-off, <s> ... </s>) + beta per token
    from recog.decode.lexicon import word_lm, word_vocabulary
    from recog.decode.ngram import train_kneser_ney

    model = train_kneser_ney([["ab", "b"], ["ba"], ["ab", "ba", "b"], ["b", "b"]], 2,
                             word_vocabulary(WORDS))
    words = word_lm(model, WORDS, TOKENS)
    g = torch.Generator().manual_seed(seed)
    lp = (2 * torch.randn(1, 6, 4, generator=g, dtype=torch.float64)).log_softmax(-1)
    lex = lexicon_automaton(WORDS, TOKENS)
    opts = BeamOptions(beam=400, nbest=400, blank_skip=1.0, word_lm_weight=0.7,
                       insertion_bonus=0.3)
    hyps = prefix_beam_search(lp, torch.tensor([6]), opts, lexicon=lex, words=words)[0]
    exact = brute_force(lp[0])

    def word_score(tokens: tuple[int, ...]) -> float:
        seq = ["<s>", *"".join(TOKENS[c] for c in tokens).split(), "</s>"]
        return math.log(10) * sum(model.logprob10(seq[:i], seq[i]) for i in range(1, len(seq)))

    allowed = {k for k in exact if _spells_known_words(list(k))}
    assert {tuple(h.tokens) for h in hyps} == allowed
    for h in hyps:
        t = tuple(h.tokens)
        assert h.score == pytest.approx(exact[t] + 0.7 * word_score(t) + 0.3 * len(t),
                                        abs=1e-4)


def test_word_lm_errors(tmp_path) -> None:
    from recog.decode.decoder import DecodeOptions, make_decoder
    from recog.decode.ngram import train_kneser_ney, write_arpa

    (tmp_path / "words").write_text("ab\nba\nb\n")
    write_arpa(train_kneser_ney([["ab", "ba"]], 2, ["ab", "ba"]), tmp_path / "words.arpa")
    with pytest.raises(ValueError, match="through a lexicon"):
        make_decoder(DecodeOptions(method="beam", word_lm=str(tmp_path / "words.arpa")),
                     TOKENS)
    # a trained LM has <unk>, which scores the lexicon word it lacks ("b")
    dec = make_decoder(DecodeOptions(method="beam", lexicon=str(tmp_path / "words"),
                                     word_lm=str(tmp_path / "words.arpa")), TOKENS)
    b = dec.words.column[dec.lexicon.next[0, TOKENS.index("b")]]
    assert int(dec.words.lm.alias[b]) == int(dec.words.lm.alias[-1])  # <unk>'s id
    (tmp_path / "no_unk.arpa").write_text(
        "\\data\\\nngram 1=4\n\n\\1-grams:\n-99\t<s>\n-0.5\tab\n-0.5\tba\n-0.5\t</s>\n"
        "\n\\end\\\n")
    with pytest.raises(DataError, match=r"does not cover 1 model token\(s\): \['b'\] \(and"):
        make_decoder(DecodeOptions(method="beam", lexicon=str(tmp_path / "words"),
                                   word_lm=str(tmp_path / "no_unk.arpa")), TOKENS)
