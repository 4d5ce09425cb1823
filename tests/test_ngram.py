"""Kneser-Ney n-grams: normalisation, a hand-computed bigram, ARPA round trip and errors,
and the compiled tables against direct ARPA back-off."""

import math
import random

import pytest
import torch

from recog.data.utterance import DataError
from recog.decode.ngram import (
    EOS,
    arpa_symbol,
    lm_automaton,
    load_lm,
    read_arpa,
    train_kneser_ney,
    write_arpa,
)

TOKENS = ["<blk>", "a", "b", "c", " "]


def _corpus(n: int = 60, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    return [[rng.choice("aab c") for _ in range(rng.randint(1, 9))] for _ in range(n)]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_history_sums_to_one(order: int) -> None:
    lm = lm_automaton(train_kneser_ney(_corpus(), order, TOKENS[1:]), TOKENS)
    totals = torch.logsumexp(torch.cat([lm.logp[:, 1:], lm.final[:, None]], 1), 1)
    assert torch.allclose(totals, torch.zeros_like(totals), atol=1e-4)


def test_bigram_by_hand() -> None:
    # sentences "a b", "a": bigrams <s> a (2), a b (1), b </s> (1), a </s> (1)
    m = train_kneser_ney([["a", "b"], ["a"]], 2, ["a", "b"])
    # unigram continuation counts: a 1 (<s> a), b 1, </s> 2 -> total 4, D1 = 0.5
    # (no n2: fallback), floor = 0.5 * 3 types / 4 / 3 words
    floor = 0.5 * 3 / 4 / 3
    p_b = (1 - 0.5) / 4 + floor
    assert 10 ** m.grams[1][("b",)][0] == pytest.approx(p_b, abs=1e-6)
    # bigram counts: n1 = 3, n2 = 1 -> D = 3/5; context "a": total 2, types 2
    d = 3 / 5
    gamma_a = d * 2 / 2
    assert 10 ** m.grams[2][("a", "b")][0] == pytest.approx((1 - d) / 2 + gamma_a * p_b,
                                                           abs=1e-6)
    assert 10 ** m.grams[1][("a",)][1] == pytest.approx(gamma_a, abs=1e-6)


def test_tables_equal_arpa_backoff(tmp_path) -> None:
    model = train_kneser_ney(_corpus(), 3, TOKENS[1:])
    write_arpa(model, tmp_path / "lm.arpa")
    back = read_arpa(tmp_path / "lm.arpa")
    lm = load_lm(tmp_path / "lm.arpa", TOKENS)
    rng = random.Random(1)
    words = [arpa_symbol(t) for t in TOKENS[1:]]
    for _ in range(50):
        seq = [rng.randrange(1, len(TOKENS)) for _ in range(rng.randint(0, 6))]
        state, total = lm.start, 0.0
        history = ["<s>"]
        for c in seq:
            total += float(lm.logp[state, c])
            expected = back.logprob10(history, words[c - 1]) * math.log(10)
            assert float(lm.logp[state, c]) == pytest.approx(expected, abs=1e-4)
            state = int(lm.next[state, c])
            history.append(words[c - 1])
        assert float(lm.final[state]) == pytest.approx(
            back.logprob10(history, EOS) * math.log(10), abs=1e-4)


def test_round_trip_keeps_every_entry(tmp_path) -> None:
    model = train_kneser_ney(_corpus(), 3, TOKENS[1:])
    write_arpa(model, tmp_path / "lm.arpa")
    back = read_arpa(tmp_path / "lm.arpa")
    for k in (1, 2, 3):
        assert back.grams[k].keys() == model.grams[k].keys()
        for g, (p, b) in model.grams[k].items():
            assert back.grams[k][g] == pytest.approx((p, b), abs=1e-5)
    assert "<space>" in (tmp_path / "lm.arpa").read_text()


GOOD = "\\data\\\nngram 1=3\nngram 2=1\n\n\\1-grams:\n-1.0\t<s>\t-0.3\n-0.5\ta\n-0.3\t</s>\n" \
       "\n\\2-grams:\n-0.1\t<s> a\n\n\\end\\\n"


@pytest.mark.parametrize("text,message,line", [
    (GOOD.replace("-0.5\ta", "x\ta"), "not a number", 7),
    (GOOD.replace("-0.1\t<s> a", "-0.1\t<s>"), "2-gram line needs", 11),
    (GOOD.replace("ngram 2=1", "ngram 2=2"), "declares 2 2-grams", None),
    (GOOD.replace("\\end\\\n", ""), "truncated", None),
    ("hello\n", "no \\\\data\\\\ header", None),
    (GOOD.replace("-0.5\ta", "0.5\ta"), "<= 0", 7),
])
def test_malformed_arpa_names_file_and_line(tmp_path, text: str, message: str,
                                            line: int | None) -> None:
    path = tmp_path / "bad.arpa"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as e:
        read_arpa(path)
    assert e.value.path == str(path) and e.value.line == line


def test_arpa_must_cover_the_model_tokens(tmp_path) -> None:
    path = tmp_path / "lm.arpa"
    path.write_text(GOOD)
    assert load_lm(path, ["<blk>", "a"]).logp.shape == (3, 2)  # (), (<s>), (a)
    with pytest.raises(DataError, match=r"does not cover 2 model token\(s\): \['b', ' '\]"):
        load_lm(path, ["<blk>", "a", "b", " "])
