from pathlib import Path

import pytest
import soundfile as sf

from recog.data.timit import find_timit_root, read_timit
from recog.data.utterance import DataError
from tests.timit_tree import SENTENCES, SPEAKERS, make_tree

PER_SPEAKER = len([s for s in SENTENCES if not s.startswith("SA")])


@pytest.mark.parametrize("layout", ["upper", "lower", "redist"])
def test_reads_every_layout(tmp_path: Path, layout: str) -> None:
    make_tree(tmp_path, layout)
    corpus = read_timit(tmp_path)
    sizes = {k: len(v) for k, v in corpus.splits.items()}
    assert sizes == {"train": 2 * PER_SPEAKER, "dev": PER_SPEAKER, "test": PER_SPEAKER,
                     "test_full": 3 * PER_SPEAKER}
    assert {u.speaker for u in corpus.splits["dev"]} == {"faks0"}
    assert {u.speaker for u in corpus.splits["test"]} == {"mdab0"}
    assert {u.speaker for u in corpus.splits["train"]} == {"fxyz0", "mabc1"}
    assert not any(u.id.split("_")[1].startswith("sa") for v in corpus.splits.values()
                   for u in v)
    u = corpus.splits["train"][0]
    assert u.id == "fxyz0_si1027" and u.text == "Tone sentence."
    assert u.tokens[0] == u.tokens[-1] == "h#"
    # The NIST original is read, not the redistribution's RIFF copy.
    assert sf.info(u.source).format == "NIST"
    assert corpus.rejected == []


def test_labels_exactly_as_in_phn(tmp_path: Path) -> None:
    base = make_tree(tmp_path)
    phn = base / "TRAIN" / "DR1" / "FXYZ0" / "SX37.PHN"
    labels = tuple(line.split()[2] for line in phn.read_text().splitlines())
    corpus = read_timit(tmp_path)
    u = next(u for u in corpus.splits["train"] if u.id == "fxyz0_sx37")
    assert u.tokens == labels


def test_keeps_sa_when_asked(tmp_path: Path) -> None:
    make_tree(tmp_path)
    corpus = read_timit(tmp_path, drop_sa=False)
    assert len(corpus.splits["train"]) == 2 * len(SENTENCES)


@pytest.mark.parametrize("root", ["TIMIT", ".", "data"])
def test_finds_tree_from_root_or_parent(tmp_path: Path, root: str) -> None:
    layout = "redist" if root == "data" else "upper"
    base = make_tree(tmp_path, layout)
    assert find_timit_root(tmp_path / root if root != "data" else tmp_path) == base


def _bad_tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path) / "TRAIN" / "DR1" / "FXYZ0"


def _expect_error(tmp_path: Path, path: Path, line: int | None, words: str) -> None:
    with pytest.raises(DataError) as err:
        read_timit(tmp_path)
    assert err.value.path == str(path)
    assert err.value.line == line
    assert words in err.value.reason
    corpus = read_timit(tmp_path, skip_bad=True)
    assert [(e.path, e.line) for e in corpus.rejected] == [(str(path), line)]
    assert len(corpus.splits["train"]) == 2 * PER_SPEAKER - 1


def test_missing_wav(tmp_path: Path) -> None:
    spk = _bad_tree(tmp_path)
    (spk / "SX37.WAV").unlink()
    _expect_error(tmp_path, spk / "SX37.WAV", None, "missing")


def test_truncated_wav(tmp_path: Path) -> None:
    spk = _bad_tree(tmp_path)
    wav = spk / "SX37.WAV"
    data = wav.read_bytes()
    wav.write_bytes(data[: len(data) // 2])
    _expect_error(tmp_path, wav, None, "truncated")


def test_malformed_phn_line(tmp_path: Path) -> None:
    spk = _bad_tree(tmp_path)
    phn = spk / "SX37.PHN"
    lines = phn.read_text().splitlines()
    lines[1] = "1200 aa"
    phn.write_text("\n".join(lines) + "\n")
    _expect_error(tmp_path, phn, 2, "expected 'start end label'")


def test_unknown_phone(tmp_path: Path) -> None:
    spk = _bad_tree(tmp_path)
    phn = spk / "SX37.PHN"
    lines = phn.read_text().splitlines()
    s, e, _ = lines[2].split()
    lines[2] = f"{s} {e} xx"
    phn.write_text("\n".join(lines) + "\n")
    _expect_error(tmp_path, phn, 3, "unknown phone 'xx'")


def test_phn_beyond_audio(tmp_path: Path) -> None:
    spk = _bad_tree(tmp_path)
    phn = spk / "SX37.PHN"
    lines = phn.read_text().splitlines()
    s, e, lab = lines[-1].split()
    lines[-1] = f"{s} {int(e) + 500} {lab}"
    phn.write_text("\n".join(lines) + "\n")
    _expect_error(tmp_path, phn, len(lines), "the audio has")


def test_empty_split(tmp_path: Path) -> None:
    speakers = {k: v for k, v in SPEAKERS.items() if k != "faks0"}
    base = make_tree(tmp_path, speakers=speakers)
    with pytest.raises(DataError, match="split 'dev' is empty") as err:
        read_timit(tmp_path)
    assert err.value.path == str(base)
    corpus = read_timit(tmp_path, skip_bad=True)
    assert corpus.splits["dev"] == [] and len(corpus.rejected) == 1
