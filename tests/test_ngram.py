"""Modified Kneser-Ney n-grams against KenLM's lmplz (reference figures in
tests/fixtures/lmplz/reference.json) and a bigram by hand; <unk>; ARPA round trip and
errors; the dense and the sparse compiled tables against direct ARPA back-off."""

import bisect
import itertools
import json
import math
import random
from pathlib import Path

import pytest
import torch

from recog.data.utterance import DataError
from recog.decode.ngram import (
    BOS,
    EOS,
    UNK,
    arpa_symbol,
    load_lm,
    read_arpa,
    sparse_lm,
    train_kneser_ney,
    write_arpa,
)

TOKENS = ["<blk>", "a", "b", "c", " "]
REFERENCE = Path(__file__).parent / "fixtures/lmplz/reference.json"


def lmplz_corpus(n_train: int = 8000, n_test: int = 1000, types: int = 3000
                 ) -> tuple[list[list[str]], list[list[str]]]:
    """Train and test sentences of a seeded word process (only rng.random(), whose stream
    Python keeps stable): Zipf-distributed words, and with probability 0.4 the previous
    word's fixed successor. Rare words seen only in the test are unknown to the LM."""
    rng = random.Random(0)
    cum = list(itertools.accumulate(1.0 / (r + 1) for r in range(types)))

    def sentence() -> list[str]:
        out = [bisect.bisect(cum, rng.random() * cum[-1])]
        for _ in range(2 + int(rng.random() * 12)):
            out.append((out[-1] * 31 + 7) % 200 if rng.random() < 0.4
                       else bisect.bisect(cum, rng.random() * cum[-1]))
        return [f"w{w}" for w in out]

    return [sentence() for _ in range(n_train)], [sentence() for _ in range(n_test)]


def _corpus(n: int = 60, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    return [[rng.choice("aab c") for _ in range(rng.randint(1, 9))] for _ in range(n)]


@pytest.mark.parametrize("model", json.loads(REFERENCE.read_text())["models"],
                         ids=lambda m: f"order{m['order']}-prune{m['prune']}")
def test_equals_lmplz(model: dict) -> None:
    train, test = lmplz_corpus()
    lm = train_kneser_ney(train, model["order"], sorted({w for s in train for w in s}),
                          model["prune"])
    for k, (ours, theirs) in enumerate(zip(lm.discounts[1:], model["discounts"],
                                           strict=True), 1):
        assert ours == pytest.approx(theirs, abs=2e-5), f"{k}-gram D1, D2, D3+"
    assert [len(g) for g in lm.grams[1:]] == model["ngrams"]
    assert lm.grams[1][(UNK,)][0] == pytest.approx(model["unk_log10"], abs=1e-6)
    assert sum(w not in lm.grams[1] and (w,) not in lm.grams[1] for s in test for w in s) \
        == model["oovs"]
    assert lm.perplexity(test) == pytest.approx(model["perplexity"], rel=1e-4)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_history_sums_to_one(order: int) -> None:
    model = train_kneser_ney(_corpus(), order, TOKENS[1:])
    predicted = [arpa_symbol(t) for t in TOKENS[1:]] + [EOS, UNK]
    histories = {g for level in model.grams[1:] for g in level if g[-1] != EOS}
    for h in sorted(histories) + [(BOS, "x", "a")]:
        total = sum(10 ** model.logprob10(h, w) for w in predicted)
        assert total == pytest.approx(1.0, abs=1e-4), h


def test_bigram_by_hand() -> None:
    # sentences "a b", "a". Unigram continuation counts: a 1 (<s> a), b 1, </s> 2; total
    # 4; counts of counts n1 = 2, n2 = 1, n3 = 0: lmplz's fallback D = 0.5, 1, 1.5
    m = train_kneser_ney([["a", "b"], ["a"]], 2, ["a", "b"])
    gamma1 = (0.5 + 0.5 + 1.0) / 4
    uniform = gamma1 / 4  # a, b, </s>, <unk>
    p_b = (1 - 0.5) / 4 + uniform
    assert 10 ** m.grams[1][("b",)][0] == pytest.approx(p_b, abs=1e-6)
    assert 10 ** m.grams[1][(UNK,)][0] == pytest.approx(uniform, abs=1e-6)
    # bigrams <s> a 2, a b 1, b </s> 1, a </s> 1: n1 = 3, n2 = 1, n3 = 0 -> fallback
    # context "a": total 2, two singletons -> gamma = 0.5 * 2 / 2
    gamma_a = 0.5 * 2 / 2
    assert 10 ** m.grams[2][("a", "b")][0] == pytest.approx((1 - 0.5) / 2 + gamma_a * p_b,
                                                           abs=1e-6)
    assert 10 ** m.grams[1][("a",)][1] == pytest.approx(gamma_a, abs=1e-6)
    assert m.discounts[1:] == [(0.5, 1.0, 1.5)] * 2


def test_unknown_tokens_score_as_unk(tmp_path) -> None:
    model = train_kneser_ney(_corpus(), 3, ["a", "b", " "])  # "c" counts as <unk>
    assert ("c",) not in model.grams[1]
    assert model.logprob10(["<s>", "a"], "zzz") == model.logprob10(["<s>", "a"], UNK)
    assert model.logprob10(["c", "zzz"], "a") == model.logprob10([UNK, UNK], "a")
    write_arpa(model, tmp_path / "lm.arpa")
    lm = load_lm(tmp_path / "lm.arpa", TOKENS)  # "c" is compiled as <unk>
    back = read_arpa(tmp_path / "lm.arpa")
    assert (UNK,) in back.grams[1]
    state = lm.start
    history = ["<s>"]
    for c in [1, 3, 3, 2, 4, 3]:
        word = arpa_symbol(TOKENS[c])
        expected = back.logprob10(history, word) * math.log(10)
        assert float(lm.logp[state, c]) == pytest.approx(expected, abs=1e-4)
        state = int(lm.next[state, c])
        history.append(word)


def test_lm_without_unk_names_what_it_lacks(tmp_path) -> None:
    path = tmp_path / "lm.arpa"
    path.write_text(GOOD)
    model = read_arpa(path)
    with pytest.raises(KeyError, match="'zzz' is not in the LM's vocabulary, which has no"):
        model.logprob10(["<s>"], "zzz")


def test_pruning_drops_rare_ngrams_and_keeps_normalisation() -> None:
    full = train_kneser_ney(_corpus(200), 3, TOKENS[1:])
    pruned = train_kneser_ney(_corpus(200), 3, TOKENS[1:], prune=[1, 1])
    assert len(pruned.grams[1]) == len(full.grams[1])
    assert 0 < len(pruned.grams[3]) < len(full.grams[3])
    for h in list(pruned.grams[2])[:20]:
        total = sum(10 ** pruned.logprob10(h, w) for w in ["a", "b", "c", "<space>", EOS, UNK])
        assert total == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="non-decreasing"):
        train_kneser_ney(_corpus(), 3, TOKENS[1:], prune=[2, 1])


@pytest.mark.parametrize("order", [2, 3])
def test_sparse_tables_equal_arpa_backoff(order: int) -> None:
    train, _ = lmplz_corpus(2000, 10, 500)
    vocab = sorted({w for s in train for w in s})[:-5] + ["never-seen"]  # 5 -> <unk>
    model = train_kneser_ney(train, order, vocab)
    lm = sparse_lm(model, vocab)
    rng = random.Random(order)
    histories = [[BOS]] + [[BOS, *rng.sample(vocab, 2)] for _ in range(30)]
    for h in histories:
        state = torch.tensor(lm.start)
        for w in h[1:]:
            state = lm.score(state, torch.tensor(vocab.index(w) + 1))[1]
        words = rng.sample(range(len(vocab)), 20)
        logp, _ = lm.score(state.expand(20), torch.tensor(words) + 1)
        for w, p in zip(words, logp.tolist(), strict=True):
            assert p == pytest.approx(model.logprob10(h, vocab[w]) * math.log(10), abs=1e-4)
        assert float(lm.final(state)) == pytest.approx(
            model.logprob10(h, EOS) * math.log(10), abs=1e-4)


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
