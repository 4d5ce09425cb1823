"""The synthetic TIMIT generator: layout, file formats, labels, speakers, reproducibility."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from recog.data.synth import SynthOptions, generate_timit
from recog.data.synth.espeak import PhonemeEvent
from recog.data.synth.espeak_timit import (
    STOP_CLOSURES,
    UnknownMnemonicError,
    timit_segments,
    timit_symbols,
)
from recog.data.synth.timit import (
    FEMALE_VARIANTS,
    MALE_VARIANTS,
    _plan,
    check_vocabulary,
    make_sentence,
)
from recog.data.timit_speakers import CORE_TEST_SPEAKERS, DEV_SPEAKERS
from recog.tokens import TIMIT_61

TINY = SynthOptions(seed=7, n_train_speakers=4, n_dev_speakers=2, n_test_speakers=3)
SMALL = SynthOptions(seed=11, n_train_speakers=1, n_dev_speakers=0, n_test_speakers=1)
STEMS = {"SA1", "SA2"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    return generate_timit(root, TINY, progress=False)


def _speaker_dirs(corpus: Path) -> list[Path]:
    pattern = "DR*/*" if corpus.name in ("TRAIN", "TEST") else "*/DR*/*"
    return sorted(p for p in corpus.glob(pattern) if p.is_dir())


def _utterances(corpus: Path) -> list[Path]:
    return sorted(corpus.glob("*/DR*/*/*.WAV"))


def _read_segments(path: Path) -> list[tuple[int, int, str]]:
    rows = (line.split() for line in path.read_text().splitlines())
    return [(int(a), int(b), w) for a, b, w in rows]


def test_tree_layout_and_names(corpus: Path) -> None:
    assert corpus.name == "TIMIT"
    assert sorted(p.name for p in corpus.parent.iterdir()) == ["TIMIT"]  # no staging left
    assert sorted(p.name for p in corpus.iterdir()) == ["TEST", "TRAIN"]
    speakers = _speaker_dirs(corpus)
    assert len(speakers) == 4 + 2 + 3
    for folder in speakers:
        assert re.fullmatch(r"[FM][A-Z]{3}[0-9]", folder.name), folder
        assert re.fullmatch(r"DR[1-8]", folder.parent.name)
        stems = {p.stem for p in folder.iterdir()}
        assert len(stems) == 10 and STEMS <= stems
        assert sum(s.startswith("SI") for s in stems) == 3
        assert sum(s.startswith("SX") for s in stems) == 5
        assert all(re.fullmatch(r"S[AIX][0-9]+", s) for s in stems)
        for stem in stems:
            for ext in (".WAV", ".PHN", ".WRD", ".TXT"):
                assert (folder / (stem + ext)).is_file()
        assert len(list(folder.iterdir())) == 40


def test_speakers_come_from_the_published_lists(corpus: Path) -> None:
    test = {p.name.lower(): int(p.parent.name[2:]) for p in _speaker_dirs(corpus / "TEST")}
    assert set(test) == set(DEV_SPEAKERS[:2]) | set(CORE_TEST_SPEAKERS[:3])
    for k, speaker in enumerate(CORE_TEST_SPEAKERS[:3]):
        assert test[speaker] == k // 3 + 1
    assert [test[s] for s in DEV_SPEAKERS[:2]] == [1, 2]  # round robin
    train = {p.name.lower(): int(p.parent.name[2:]) for p in _speaker_dirs(corpus / "TRAIN")}
    assert not set(train) & (set(DEV_SPEAKERS) | set(CORE_TEST_SPEAKERS))
    assert sorted(train.values()) == [1, 2, 3, 4]


def test_voice_variant_matches_the_speakers_sex() -> None:
    speakers = _plan(SynthOptions(seed=3, n_train_speakers=40))
    assert {s.speaker_id[0] for s in speakers} == {"f", "m"}
    for s in speakers:
        variant = s.voice.split("+")[1]
        assert variant in (FEMALE_VARIANTS if s.speaker_id[0] == "f" else MALE_VARIANTS)
        assert 120 <= s.rate_wpm <= 220


def test_wav_files_are_nist_sphere_16k(corpus: Path) -> None:
    for wav in _utterances(corpus):
        info = sf.info(str(wav))
        assert (info.format, info.subtype, info.samplerate, info.channels) == (
            "NIST",
            "PCM_16",
            16000,
            1,
        )
        assert wav.read_bytes()[:8] == b"NIST_1A\n"
        data, _ = sf.read(str(wav), dtype="int16")
        assert data.std() > 100  # there is speech in it


def test_phone_labels_are_timit_and_contiguous(corpus: Path) -> None:
    for wav in _utterances(corpus):
        n = sf.info(str(wav)).frames
        segments = _read_segments(wav.with_suffix(".PHN"))
        labels = [s[2] for s in segments]
        assert set(labels) <= set(TIMIT_61)
        assert segments[0][0] == 0 and segments[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(segments, segments[1:], strict=False))
        assert all(s[1] > s[0] for s in segments)
        assert labels[0] == labels[-1] == "h#" and "h#" not in labels[1:-1]
        # the padding makes the edge silences real: at least 70 ms each
        assert segments[0][1] >= 1120 and n - segments[-1][0] >= 1120
        for i, label in enumerate(labels):
            if label in STOP_CLOSURES:
                assert labels[i - 1] == STOP_CLOSURES[label], (wav, i, labels)


def test_words_and_text_agree(corpus: Path) -> None:
    for wav in _utterances(corpus):
        n = sf.info(str(wav)).frames
        start, end, text = wav.with_suffix(".TXT").read_text().rstrip("\n").split(" ", 2)
        assert (start, end) == ("0", str(n))
        words = _read_segments(wav.with_suffix(".WRD"))
        expected = [re.sub(r"[^a-z']", "", w.lower()) for w in text.split()]
        assert [w[2] for w in words] == expected
        boundaries = {s[0] for s in _read_segments(wav.with_suffix(".PHN"))}
        previous_end = 0
        for a, b, _ in words:
            assert previous_end <= a < b <= n and a in boundaries
            previous_end = b


def test_sentence_sharing_follows_timit(corpus: Path) -> None:
    texts: dict[str, set[str]] = defaultdict(set)
    side_of: dict[str, set[str]] = defaultdict(set)
    si: list[str] = []
    for txt in corpus.glob("*/DR*/*/*.TXT"):
        sentence = txt.read_text().split(" ", 2)[2]
        texts[txt.stem].add(sentence)
        side_of[sentence].add(txt.parts[-4])
        if txt.stem.startswith("SI"):
            si.append(sentence)
    assert len(texts["SA1"]) == len(texts["SA2"]) == 1  # every speaker reads the same SA
    assert len(si) == len(set(si)) == 3 * 9  # SI sentences are unique
    for stem, sentences in texts.items():
        assert len(sentences) == 1, stem  # a file name always holds the same sentence
    shared = [s for stem, ss in texts.items() if not stem.startswith("SA") for s in ss]
    assert all(len(side_of[s]) == 1 for s in shared)  # no text in both TRAIN and TEST


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    first = generate_timit(tmp_path / "a", SMALL, progress=False)
    again = generate_timit(
        tmp_path / "b", SynthOptions(**{**SMALL.__dict__, "workers": 1}), progress=False
    )
    other = generate_timit(
        tmp_path / "c", SynthOptions(**{**SMALL.__dict__, "seed": 12}), progress=False
    )
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 2 * 40
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (first / rel).read_bytes() == (again / rel).read_bytes(), rel
    first_wav = sorted(first.rglob("*.WAV"))
    other_wav = sorted(other.rglob("*.WAV"))
    assert [p.read_bytes() for p in first_wav] != [p.read_bytes() for p in other_wav]


def test_existing_tree_is_left_alone(tmp_path: Path) -> None:
    existing = tmp_path / "TIMIT"
    existing.mkdir()
    (existing / "marker").write_text("x")
    assert generate_timit(tmp_path, TINY, progress=False) == existing
    assert [p.name for p in existing.iterdir()] == ["marker"]
    assert [p.name for p in tmp_path.iterdir()] == ["TIMIT"]


def test_unknown_mnemonic_is_an_error_naming_it() -> None:
    with pytest.raises(UnknownMnemonicError, match="'Q9'"):
        timit_symbols("Q9", "en-us")
    assert timit_symbols("'aI", "en") == ("ay",)
    assert timit_symbols("A@", "en-us") == ("aa", "r")  # rhotic accent
    assert timit_symbols("A@", "en") == ("aa",)


def test_grammar_words_are_in_cmudict() -> None:
    check_vocabulary()
    rng = np.random.default_rng(0)
    for _ in range(200):
        n_words = len(make_sentence(rng).split())
        assert 6 <= n_words <= 12


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="n_dev_speakers"):
        SynthOptions(n_dev_speakers=51)
    with pytest.raises(ValueError, match="rate_wpm"):
        SynthOptions(rate_wpm=(220, 120))


def _tone(n: int, freq: float, rate: int = 22050, amp: float = 3000.0) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)


def test_closure_is_the_silence_before_an_unvoiced_burst() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([
        np.zeros(1000), _tone(2000, 300), np.zeros(600),  # vowel, then eSpeak's silence
        rng.normal(0, 2000, 400), _tone(2000, 300), np.zeros(1000),  # burst, vowel, pause
    ]).astype(np.int16)  # fmt: skip
    events = [
        PhonemeEvent("a", 1000, 1),
        PhonemeEvent("t", 3600, 1),
        PhonemeEvent("a", 4000, 1),
        PhonemeEvent("_:", 6000, 3),
    ]
    segments = timit_segments(x, events, "en-us", 22050)
    assert [(s.start, s.end, s.label) for s in segments] == [
        (0, 1000, "h#"),
        (1000, 3000, "ae"),
        (3000, 3600, "tcl"),
        (3600, 4000, "t"),
        (4000, 6000, "ae"),
        (6000, 7000, "h#"),
    ]


def test_closure_of_a_voiced_stop_is_its_voice_bar() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([
        np.zeros(1000), _tone(2000, 300), _tone(800, 120, amp=600),  # vowel, voice bar
        rng.normal(0, 2000, 200), _tone(2000, 300), np.zeros(1000),
    ]).astype(np.int16)  # fmt: skip
    events = [
        PhonemeEvent("a", 1000, 1),
        PhonemeEvent("d", 3000, 1),
        PhonemeEvent("a", 4000, 1),
        PhonemeEvent("_:", 6000, 3),
    ]
    segments = timit_segments(x, events, "en-us", 22050)
    labels = [s.label for s in segments]
    assert labels == ["h#", "ae", "dcl", "d", "ae", "h#"]
    closure, release = segments[2], segments[3]
    assert closure.start == 3000 and release.end == 4000
    assert abs(release.start - 3800) <= 22  # the burst found within half a 2 ms frame


_INTERRUPTED_BUILD = """
import sys
from pathlib import Path
from recog.data.synth import SynthOptions, generate_timit
if __name__ == "__main__":
    try:
        generate_timit(Path(sys.argv[1]), SynthOptions(seed=5, n_train_speakers=40), False)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
"""


def test_ctrl_c_stops_the_build_in_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """Ctrl-C reaches the whole process group: the pool's workers leave it to the parent,
    which stops and joins them, so none prints a traceback or a 'Process ...' line."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "build.py"
    script.write_text(_INTERRUPTED_BUILD)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "corpus")],
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # (as a terminal's foreground job gets it, even when the tests run with SIGINT ignored)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "corpus").glob(".TIMIT.partial-*/**/*.WAV")):
        assert proc.poll() is None and time.monotonic() < deadline, "no speaker written"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err == "interrupted\n", err
    assert list((tmp_path / "corpus").iterdir()) == []  # no TIMIT, no staging folder
