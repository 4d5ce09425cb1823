"""The FSDD reader on six real FSDD recordings (tests/fixtures/fsdd, CC BY-SA 4.0): speaker
splits, the digit words, both layouts, and the errors a user meets."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from recog.data.fsdd import DIGIT_WORDS, read_fsdd
from recog.data.utterance import DataError

FIXTURES = Path(__file__).parent / "fixtures" / "fsdd"


def test_splits_by_speaker_with_the_digit_words() -> None:
    corpus = read_fsdd(FIXTURES, dev_speakers=["lucas"], test_speakers=["jackson"])
    ids = {split: [u.id for u in utts] for split, utts in corpus.splits.items()}
    assert ids == {"train": ["george_0_0", "george_7_3", "nicolas_5_7"],
                   "dev": ["lucas_1_2"], "test": ["jackson_3_1", "jackson_9_4"]}
    test = corpus.splits["test"]
    assert [u.text for u in test] == ["three", "nine"]
    assert test[0].tokens == ("t", "h", "r", "e", "e")
    assert {u.speaker for u in test} == {"jackson"}
    assert test[1].source == str(FIXTURES / "recordings" / "9_jackson_4.wav")
    assert corpus.rejected == []


def test_word_tokens_make_each_digit_word_one_token() -> None:
    corpus = read_fsdd(FIXTURES, ["lucas"], ["jackson"], tokens="words")
    assert [(u.tokens, u.text) for u in corpus.splits["test"]] == [
        (("three",), "three"), (("nine",), "nine")]
    with pytest.raises(ValueError, match="corpus.tokens is chars or words, not 'phones'"):
        read_fsdd(FIXTURES, ["lucas"], ["jackson"], tokens="phones")


def test_word_tokens_are_scored_as_the_words_letters_and_the_words() -> None:
    from recog.features.audio import AudioFeatureOptions
    from recog.metrics import score
    from recog.tasks import SpeechTask

    task = SpeechTask(AudioFeatureOptions(), "words", DIGIT_WORDS)
    assert task.selection == "WER" and not task.characters
    assert task.vocabulary([]).tokens[1:] == DIGIT_WORDS
    ref, hyp = {"a": ["nine"], "b": ["one", "two"]}, {"a": ["one"], "b": ["one"]}
    cer, wer = (score(ref, hyp, task.metrics[m]).total for m in ("CER", "WER"))
    # by hand: nine -> one is 1 substitution + 1 deletion of 4 letters; "one two" -> "one"
    # deletes " two" (4 of 7 characters); words: 1 substitution, then 1 deletion of 3
    assert (cer.errors, cer.n) == (6, 11)
    assert (wer.errors, wer.n) == (2, 3)


def test_flat_layout_reads_the_same(tmp_path: Path) -> None:
    for wav in (FIXTURES / "recordings").glob("*.wav"):
        shutil.copy(wav, tmp_path / wav.name)
    corpus = read_fsdd(tmp_path, ["lucas"], ["jackson"])
    assert [u.id for u in corpus.splits["train"]] == ["george_0_0", "george_7_3",
                                                      "nicolas_5_7"]


def test_a_named_speaker_absent_from_the_folder_is_an_error_naming_it() -> None:
    with pytest.raises(DataError, match=r"test_speakers: speaker\(s\) \['theo'\]"):
        read_fsdd(FIXTURES, ["lucas"], ["theo"])
    with pytest.raises(DataError, match="both dev_speakers and test_speakers"):
        read_fsdd(FIXTURES, ["lucas"], ["lucas"])


def test_bad_names_and_audio_name_the_file(tmp_path: Path) -> None:
    for wav in (FIXTURES / "recordings").glob("*.wav"):
        shutil.copy(wav, tmp_path / wav.name)
    (tmp_path / "hello.wav").write_bytes(b"not audio")
    with pytest.raises(DataError, match=r"hello\.wav: not an FSDD file name"):
        read_fsdd(tmp_path, ["lucas"], ["jackson"])
    (tmp_path / "hello.wav").unlink()
    (tmp_path / "4_george_9.wav").write_bytes(b"RIFF garbage")
    with pytest.raises(DataError, match=r"4_george_9\.wav: unreadable audio"):
        read_fsdd(tmp_path, ["lucas"], ["jackson"])
    corpus = read_fsdd(tmp_path, ["lucas"], ["jackson"], skip_bad=True)
    assert [Path(e.path).name for e in corpus.rejected] == ["4_george_9.wav"]
    assert len(corpus.splits["train"]) == 3


def test_recog_prepare_corpus_fsdd(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", "from recog.cli import prepare; prepare()", "corpus=fsdd",
         f"corpus.root={FIXTURES}", "corpus.dev_speakers=[lucas]",
         "corpus.test_speakers=[jackson]", f"prepare.out={tmp_path}"],
        capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    rows = {line.split()[0]: line.split()[1:5] for line in run.stdout.splitlines()[2:5]}
    # speakers, utterances, letters (tokens), letters scored (CER)
    assert rows == {"train": ["2", "3", "13", "13"], "dev": ["1", "1", "3", "3"],
                    "test": ["1", "2", "9", "9"]}
    bad = subprocess.run(
        [sys.executable, "-c", "from recog.cli import prepare; prepare()", "corpus=fsdd",
         f"corpus.root={FIXTURES}", "corpus.test_speakers=[theo]", f"prepare.out={tmp_path}"],
        capture_output=True, text=True)
    assert bad.returncode == 2 and "['theo']" in bad.stderr and "Traceback" not in bad.stderr


def test_recog_prepare_with_word_tokens_counts_words_and_their_letters(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", "from recog.cli import prepare; prepare()", "corpus=fsdd",
         f"corpus.root={FIXTURES}", "corpus.dev_speakers=[lucas]", "corpus.tokens=words",
         "corpus.test_speakers=[jackson]", f"prepare.out={tmp_path}"],
        capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    rows = {line.split()[0]: line.split()[1:6] for line in run.stdout.splitlines()[2:5]}
    # speakers, utterances, tokens (one a word), letters scored (CER), words scored (WER)
    assert rows == {"train": ["2", "3", "3", "13", "3"], "dev": ["1", "1", "1", "3", "1"],
                    "test": ["1", "2", "2", "9", "2"]}


def test_synthetic_digit_speakers_are_fsdd_files_identical_for_a_seed(tmp_path: Path) -> None:
    from recog.data.synth.digits import DigitSynthOptions, generate_digits

    options = DigitSynthOptions(speakers=2, repeats=1, workers=2)
    first = generate_digits(tmp_path / "a", options, progress=False)
    again = generate_digits(tmp_path / "b", options, progress=False)
    other = generate_digits(tmp_path / "c", DigitSynthOptions(speakers=2, repeats=1, seed=1),
                            progress=False)
    names = sorted(p.name for p in first.glob("*.wav"))
    assert names == sorted(f"{d}_espeak{s:02d}_0.wav" for d in range(10) for s in range(2))
    assert all((first / n).read_bytes() == (again / n).read_bytes() for n in names)
    assert any((first / n).read_bytes() != (other / n).read_bytes() for n in names)
    info = soundfile.info(first / names[0])
    assert (info.samplerate, info.subtype, info.channels) == (8000, "PCM_16", 1)
    assert all(0.1 < soundfile.info(first / n).duration < 2.0 for n in names)


def test_added_speakers_train_only_and_cannot_share_a_real_name(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    wav = FIXTURES / "recordings" / "0_george_0.wav"
    for name in ("3_espeak00_0.wav", "1_espeak01_0.wav"):
        shutil.copy(wav, extra / name)
    corpus = read_fsdd(FIXTURES, ["lucas"], ["jackson"], extra=extra)
    assert [u.id for u in corpus.splits["train"]] == [
        "espeak00_3_0", "espeak01_1_0", "george_0_0", "george_7_3", "nicolas_5_7"]
    assert [u.text for u in corpus.splits["train"][:2]] == ["three", "one"]
    assert [u.id for u in corpus.splits["dev"]] == ["lucas_1_2"]
    assert [u.id for u in corpus.splits["test"]] == ["jackson_3_1", "jackson_9_4"]
    shutil.copy(wav, extra / "2_lucas_0.wav")  # a real speaker's name among the added ones
    with pytest.raises(DataError, match=r"2_lucas_0\.wav: speaker 'lucas' of the added"):
        read_fsdd(FIXTURES, ["lucas"], ["jackson"], extra=extra)
