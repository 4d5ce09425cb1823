import pytest

from recog.tokens import (
    BLANK,
    TIMIT_39,
    TIMIT_48,
    TIMIT_61,
    Vocabulary,
    fold_timit,
    timit_vocabulary,
)


def test_class_counts() -> None:
    # 61 TIMIT labels (q included), 48 training classes, 39 scoring classes (Lee & Hon 1989)
    assert len(TIMIT_61) == 61
    assert len(TIMIT_48) == 48
    assert len(TIMIT_39) == 39
    assert "sil" in TIMIT_39 and "q" in TIMIT_61


def test_every_61_symbol_maps() -> None:
    for p in TIMIT_61:
        folded48 = fold_timit([p], 48)
        folded39 = fold_timit([p], 39)
        if p == "q":
            assert folded48 == folded39 == []
        else:
            assert folded48[0] in TIMIT_48 and folded39[0] in TIMIT_39
            # folding 61 -> 48 -> 39 equals folding 61 -> 39
            assert fold_timit(folded48, 39) == folded39


def test_sil_class_and_no_merging() -> None:
    # Kaldi keeps consecutive sil: pau bcl b -> sil sil b
    assert fold_timit(["h#", "pau", "bcl", "b", "q", "ix", "epi", "h#"], 39) == [
        "sil", "sil", "sil", "b", "ih", "sil", "sil"]
    assert fold_timit(["zh", "ao", "ux", "el", "en", "nx", "hv", "axr"], 39) == [
        "sh", "aa", "uw", "l", "n", "n", "hh", "er"]
    assert fold_timit(["kcl", "pcl", "bcl"], 48) == ["cl", "cl", "vcl"]


def test_unknown_phone() -> None:
    with pytest.raises(KeyError, match="xx"):
        fold_timit(["xx"], 39)


def test_vocabulary() -> None:
    v = timit_vocabulary(61)
    assert v.tokens[0] == BLANK and len(v) == 61  # 60 phones (q removed) + blank
    assert len(timit_vocabulary(48)) == 49 and len(timit_vocabulary(39)) == 40
    ids = v.encode(["h#", "aa"])
    assert v.decode(ids) == ["h#", "aa"] and 0 not in ids
    assert Vocabulary.from_json(v.to_json()) == v
    with pytest.raises(ValueError):
        Vocabulary(("a", "b"))
