"""recog.inference against recog-transcribe: the same checkpoint and input give the same
tokens, text, scores and alignment, from in-memory strokes and samples as from files; bad
in-memory input is a one-line DataError; concurrent calls give what serial calls give."""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from recog.cli import transcribe
from recog.data.manifest import read_strokes
from recog.data.utterance import DataError
from recog.features.pen import PenFeatureOptions, feature_points, pen_features
from recog.inference import Ink, Recognizer, rows_per_stroke
from tests.test_transcribe import ink_checkpoint, speech  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def ink(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    return ink_checkpoint(tmp_path_factory.mktemp("ink"))


def _cli(argv: list[str], capsys: pytest.CaptureFixture) -> list[dict]:
    transcribe([*argv, "--json"])
    return json.loads(capsys.readouterr().out)


def _same(api: dict, cli: dict) -> None:
    """The same result; scores to float32 rounding (the CLI pads files into one batch)."""
    for key in ("tokens", "text"):
        assert api[key] == cli[key], key
    for key in ("score", "acoustic", "lm"):
        assert api[key] == pytest.approx(cli[key], rel=1e-5, abs=1e-6), key
    assert [h["text"] for h in api["nbest"]] == [h["text"] for h in cli["nbest"]]
    assert [{k: v for k, v in t.items() if k != "ink"} for t in api["times"]] == cli["times"]


def test_ink_lists_give_what_recog_transcribe_gives_for_the_file(
        ink: tuple, capsys: pytest.CaptureFixture) -> None:
    ckpt, paths = ink
    cli = _cli([str(ckpt), *map(str, paths)], capsys)
    rec = Recognizer.load(ckpt)
    assert [r["text"] for r in cli] == ["ab", "ba b", "abba"]  # what the model was taught
    for path, expected in zip(paths, cli, strict=True):
        strokes = [s.tolist() for s in read_strokes(path)]  # the XML reader's points
        _same(rec.ink(strokes).as_dict(), expected)
        _same(rec.file(path).as_dict(), expected)


def test_beam_search_through_the_api_matches_the_cli(ink: tuple,
                                                     capsys: pytest.CaptureFixture) -> None:
    ckpt, paths = ink
    cli = _cli([str(ckpt), "--beam", "4", "--nbest", "2", str(paths[2])], capsys)
    rec = Recognizer.load(ckpt, beam=4, nbest=2)
    assert rec.info()["decode"] == {"method": "beam", "beam": 4}
    _same(rec.ink([s.tolist() for s in read_strokes(paths[2])]).as_dict(), cli[0])


def test_ink_spans_name_the_strokes_of_each_character(ink: tuple) -> None:
    """stroke_xml writes one stroke per character (none for spaces): in "abba" each
    character's highlighted points start in its own stroke or a later one, never an
    earlier one, and the four characters cover the four strokes in order."""
    ckpt, paths = ink
    strokes = [s.tolist() for s in read_strokes(paths[2])]
    r = Recognizer.load(ckpt).ink(strokes)
    assert r.tokens == list("abba")
    spans = [t["ink"] for t in r.times]
    assert all(spans), spans
    firsts = [s[0][0] for s in spans]
    assert firsts == sorted(firsts) and spans[-1][-1][0] == 3
    covered = {k for s in spans for k, _, _ in s}
    assert covered <= {0, 1, 2, 3} and 3 in covered
    for s in spans:
        for k, first, last in s:
            assert 0 <= first <= last < len(strokes[k])


def test_audio_samples_give_what_recog_transcribe_gives_for_the_wav(
        speech: tuple, capsys: pytest.CaptureFixture) -> None:  # noqa: F811
    ckpt, paths, expected = speech
    cli = _cli([str(ckpt), *map(str, paths)], capsys)
    assert [r["text"] for r in cli] == expected
    rec = Recognizer.load(ckpt)
    info = rec.info()
    assert info["modality"] == "speech" and info["front_end"]["front_end"] == "audio"
    for path, want in zip(paths, cli, strict=True):
        samples, rate = sf.read(path, dtype="float32")  # soundfile directly, not recog's reader
        got = rec.audio(samples, rate, posteriors=True)
        _same(got.as_dict(), want)
        post = np.array(got.posteriors)
        assert post.shape[1] == len(info["tokens"]) and np.allclose(post.sum(1), 1, atol=1e-4)
        assert got.times[-1]["end"] <= len(post) * 0.01 + 1e-9  # 10 ms frames, no stacking


def test_bad_in_memory_input_is_a_data_error(ink: tuple, speech: tuple) -> None:  # noqa: F811
    rec = Recognizer.load(ink[0])
    for strokes, reason in (([], "non-empty list of strokes"),
                            ([[[1, 2, 0]], [[1]]], "stroke 1 must be"),
                            ([[[1, 2, 0], [float("nan"), 2, 1]]], "stroke 0, point 1: a "
                             "coordinate"),
                            ([[[1, 2, 1.0], [2, 2, 0.5]]], "stroke 0, point 1: time goes back"),
                            ("abc", "non-empty list of strokes")):
        with pytest.raises(DataError, match=reason) as e:
            rec.ink(strokes)  # type: ignore[arg-type]
        assert str(e.value).startswith("<ink>: ") and "\n" not in str(e.value)
    with pytest.raises(DataError, match="recognises ink, not speech"):
        rec.audio(np.zeros(1600), 16000)
    speech_rec = Recognizer.load(speech[0])
    with pytest.raises(DataError, match="recognises speech, not ink"):
        speech_rec.ink([[[0, 0, 0], [1, 1, 1]]])
    with pytest.raises(DataError, match="sample rate 100 Hz"):
        speech_rec.audio(np.zeros(1600), 100)
    with pytest.raises(DataError, match="non-finite sample"):
        speech_rec.audio(np.full(1600, np.inf), 16000)


def test_concurrent_calls_give_the_serial_results(ink: tuple) -> None:
    ckpt, paths = ink
    rec = Recognizer.load(ckpt)
    lines = [[s.tolist() for s in read_strokes(p)] for p in paths]
    serial = [rec.ink(s).as_dict() for s in lines]
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda i: rec.ink(lines[i % 3]).as_dict(), range(24)))
    assert got == [serial[i % 3] for i in range(24)]


@pytest.mark.parametrize("kind", ["compact", "graves", "bezier"])
def test_rows_per_stroke_from_pen_up_is_feature_points_grouping(ink: tuple, kind: str) -> None:
    opts = PenFeatureOptions(kind=kind)
    for path in ink[1]:
        line = Ink(tuple(read_strokes(path)))
        rows = rows_per_stroke(pen_features(line.strokes, opts), line, opts)
        assert rows == [len(g) for g in feature_points(line.strokes, opts)]
        assert len(rows) == len(line.strokes) and sum(rows) == len(pen_features(line.strokes,
                                                                                opts))
