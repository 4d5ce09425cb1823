from recog.metrics import ErrorCounts, align_counts, read_text, score, speaker_of, write_text
from recog.tokens import fold_timit


def test_counts_by_hand() -> None:
    # ref a b c d, hyp a x c d e: 1 substitution (b->x), 1 insertion (e)
    assert align_counts("a b c d".split(), "a x c d e".split()) == ErrorCounts(4, 1, 0, 1)
    # ref a b c d, hyp b c: 2 deletions
    assert align_counts("a b c d".split(), "b c".split()) == ErrorCounts(4, 0, 2, 0)
    # everything deleted / everything inserted
    assert align_counts(["a", "b"], []) == ErrorCounts(2, 0, 2, 0)
    assert align_counts([], ["a"]) == ErrorCounts(0, 0, 0, 1)
    # kitten -> sitting: 2 substitutions, 1 insertion
    assert align_counts(list("kitten"), list("sitting")) == ErrorCounts(6, 2, 0, 1)


def test_corpus_per_and_folding() -> None:
    refs = {"faks0_si1": ["h#", "pau", "bcl", "b", "aa", "h#"], "mdab0_sx2": ["s", "iy"]}
    hyps = {"faks0_si1": ["h#", "b", "ao", "h#"], "mdab0_sx2": ["s", "iy", "z"]}
    s = score(refs, hyps, lambda t: fold_timit(t, 39))
    # folded ref 1: sil sil sil b aa sil; hyp: sil b aa sil -> 2 deletions (ao folds to aa)
    assert s.per_utterance["faks0_si1"] == ErrorCounts(6, 0, 2, 0)
    assert s.per_utterance["mdab0_sx2"] == ErrorCounts(2, 0, 0, 1)
    assert s.total == ErrorCounts(8, 0, 2, 1)
    assert abs(s.total.rate - 100 * 3 / 8) < 1e-9
    assert set(s.per_speaker) == {"faks0", "mdab0"}
    d = s.as_dict()
    assert (d["n"], d["sub"], d["del"], d["ins"], d["err"]) == (8, 0, 2, 1, 3)


def test_missing_hypothesis_is_all_deletions() -> None:
    s = score({"a_1": ["x", "y"]}, {})
    assert s.total == ErrorCounts(2, 0, 2, 0)


def test_speaker_prefix() -> None:
    assert speaker_of("faks0_si1573") == "faks0"
    assert speaker_of("a01-000u-01") == "a01"
    assert speaker_of("plain") == "plain"


def test_text_round_trip(tmp_path) -> None:
    entries = {"u2": ["b"], "u1": ["a", "c"], "u3": []}
    write_text(tmp_path / "t", entries)
    assert (tmp_path / "t").read_text() == "u1 a c\nu2 b\nu3\n"
    assert read_text(tmp_path / "t") == entries


def test_cer_and_wer_by_hand() -> None:
    from recog.tasks import InkTask

    cer, wer = InkTask.metrics["CER"], InkTask.metrics["WER"]
    ref, hyp = tuple("the cat sat"), tuple("the bat  sat!")
    # characters: c->b (S), extra space (I), '!' (I)
    assert score({"w-1": ref}, {"w-1": hyp}, cer).total == ErrorCounts(11, 1, 0, 2)
    # words: the cat sat | the bat sat! -> 2 substitutions
    assert score({"w-1": ref}, {"w-1": hyp}, wer).total == ErrorCounts(3, 2, 0, 0)
    # a missing word: 1 deletion of 2 words, 4 of 7 characters
    assert score({"w-1": tuple("ab cd")}, {"w-1": tuple("ab")}, wer).total == ErrorCounts(
        2, 0, 1, 0)


def test_sclite_weights_prefer_indels_to_two_substitutions() -> None:
    from recog.metrics import align

    # Levenshtein: 2 substitutions or 1 D + 1 I (both 2 errors); sclite's costs (S 4, D 3,
    # I 3) choose 6 over 8: delete 'a', keep 'b', insert 'a'.
    assert align(["a", "b"], ["b", "a"]) == [("D", "a", None), ("C", "b", "b"),
                                             ("I", None, "a")]
    # one substitution (4) beats a deletion plus an insertion (6)
    assert align(["a"], ["b"]) == [("S", "a", "b")]


def test_bootstrap_interval_reproducible_and_contains_estimate() -> None:
    import random

    rng = random.Random(1)
    refs, hyps = {}, {}
    for spk in range(12):
        for k in range(5):
            ref = [rng.choice("abc") for _ in range(10)]
            hyps[f"s{spk}-{k}"] = [t if rng.random() > 0.05 * (spk % 4) else "x" for t in ref]
            refs[f"s{spk}-{k}"] = ref
    s = score(refs, hyps)
    a, b = s.confidence_interval(seed=7), s.confidence_interval(seed=7)
    assert a == b and a != s.confidence_interval(seed=8)
    assert a[0] < s.total.rate < a[1]
    assert sum(c.errors for c in s.per_speaker.values()) == s.total.errors
    assert sum(c.n for c in s.per_speaker.values()) == s.total.n


def test_trn_round_trip_and_report(tmp_path) -> None:
    from recog.metrics import report, write_trn

    write_trn(tmp_path / "h.trn", {"s1-1": ["a", "b"], "s1-2": []})
    assert read_text(tmp_path / "h.trn") == {"s1-1": ["a", "b"], "s1-2": []}
    s = score({"s1-1": ["a", "b"], "s1-2": ["c"]}, read_text(tmp_path / "h.trn"))
    text = report(s, "t")
    assert "| **total** | 3 | 2 | 0 | 1 | 0 | 1 | 33.33 |" in text
    assert "- `c`: 1" in text and "REF: c" in text and "HYP: *" in text


def test_bootstrap_does_not_depend_on_input_order() -> None:
    refs = {f"s{k}-1": ["a"] * (k + 1) for k in range(6)}
    hyps = {f"s{k}-1": ["a"] * (k % 3) for k in range(6)}
    forward = score(refs, hyps).confidence_interval(seed=3)
    backward = score(dict(reversed(refs.items())), hyps).confidence_interval(seed=3)
    assert forward == backward
