"""recog-transcribe's decoding set-ups and outputs: folders, wav.scp and path lists, a
lexicon and word LM, the set-up recog-lm stored (--tuned), 39-folded phones, and --json with
scores, token times and the n-best."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from recog.batching import pad
from recog.cli import transcribe
from recog.decode.beam import BeamOptions
from recog.decode.decoder import DecodeOptions
from recog.decode.ngram import train_kneser_ney, write_arpa
from recog.features.audio import AudioFeatureOptions, audio_features
from recog.models import save_checkpoint
from recog.models.checkpoint import load_checkpoint
from recog.tokens import Vocabulary
from recog.transcribe import write_tuned_setup
from tests.test_transcribe import _config, ink_checkpoint, speech  # noqa: F401  (fixture)
from tests.test_warps import _log_mean_exp


def _run(capsys: pytest.CaptureFixture, *args: object) -> str:
    transcribe([str(a) for a in args])
    return capsys.readouterr().out


def _fails(capsys: pytest.CaptureFixture, pattern: str, *args: object) -> None:
    """The verb stops with exit status 2, nothing on stdout and one ``error:`` line
    matching ``pattern`` on stderr."""
    with pytest.raises(SystemExit) as stop:
        transcribe([str(a) for a in args])
    out, err = capsys.readouterr()
    assert stop.value.code == 2 and out == "", out
    assert len(err.splitlines()) == 1 and re.search(pattern, err), err


def test_folder_scp_and_list_give_the_files_results(speech: tuple, tmp_path: Path,  # noqa: F811
                                                   capsys: pytest.CaptureFixture) -> None:
    ckpt, paths, expected = speech
    folder = paths[0].parent
    lines = _run(capsys, ckpt, folder).splitlines()  # the folder's WAVs, sorted
    assert lines == [f"{p}\t{e}" for p, e in sorted(zip(paths, expected, strict=True))]
    scp = tmp_path / "wav.scp"
    scp.write_text(f"spk1-a {paths[2]}\nspk1-b {paths[0]}\n")
    assert _run(capsys, ckpt, "--scp", scp, "--kaldi") == (
        f"spk1-a {expected[2]}\nspk1-b {expected[0]}\n")
    listed = tmp_path / "files.txt"
    listed.write_text(f"{paths[1]}\n\n{paths[0]}\n")
    assert _run(capsys, ckpt, "--list", listed, "--kaldi") == (
        f"u1 {expected[1]}\nu0 {expected[0]}\n")
    scp.write_text(f"x sox {paths[0]} -t wav - |\n")
    _fails(capsys, r"wav.scp:1: expected '<key> <file path>'", ckpt, "--scp", scp)
    (tmp_path / "empty").mkdir()
    _fails(capsys, r"empty: a folder without files this model reads", ckpt, tmp_path / "empty")


def test_a_too_short_file_among_several_is_named(speech: tuple, tmp_path: Path,  # noqa: F811
                                                 capsys: pytest.CaptureFixture) -> None:
    ckpt, paths, _ = speech
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(160, np.float32), 16000, subtype="PCM_16")
    _fails(capsys, r"short.wav: 160 samples: shorter than one", ckpt, paths[0], short, paths[1])
    assert capsys.readouterr().out == ""


def test_json_has_scores_times_and_nbest(speech: tuple, capsys: pytest.CaptureFixture  # noqa: F811
                                         ) -> None:
    ckpt, paths, expected = speech
    out = json.loads(_run(capsys, ckpt, "--json", "--beam", "8", "--nbest", "3", *paths))
    model, _, _ = load_checkpoint(ckpt)
    for r, path, text in zip(out, paths, expected, strict=True):
        assert r["text"] == text and r["nbest"][0]["tokens"] == r["tokens"]
        scores = [h["score"] for h in r["nbest"]]
        assert 1 <= len(scores) <= 3 and scores == sorted(scores, reverse=True)
        assert len({tuple(h["tokens"]) for h in r["nbest"]}) == len(scores)
        # times: one span per token, in order, inside the file; 10 ms frames x stack
        assert [t["token"] for t in r["times"]] == r["tokens"]
        seconds = sf.info(str(path)).duration
        step = 0.01 * model.options.stack
        ends = [0] + [t["frame_end"] for t in r["times"]]
        for t, before in zip(r["times"], ends, strict=False):
            assert before <= t["frame_start"] < t["frame_end"]
            assert t["start"] == pytest.approx(t["frame_start"] * step)
            assert t["end"] == pytest.approx(t["frame_end"] * step) and t["end"] <= seconds
        assert r["score"] == pytest.approx(r["acoustic"]) and r["acoustic"] <= 0  # no LM
    greedy = json.loads(_run(capsys, ckpt, "--json", paths[0]))[0]
    assert len(greedy["nbest"]) == 1 and greedy["score"] <= 0 and greedy["lm"] == 0


def test_fold39_prints_the_scoring_classes(speech: tuple, tmp_path: Path,  # noqa: F811
                                           capsys: pytest.CaptureFixture) -> None:
    ckpt, paths, expected = speech
    model, vocab, payload = load_checkpoint(ckpt)
    # the same network, its phones renamed to ones the 39-class folding merges
    # (Lee & Hon 1989: ao -> aa, zh -> sh, em -> m, ix -> ih)
    rename = {"aa": "ao", "sh": "zh", "m": "em", "iy": "ix", "s": "s"}
    renamed = tmp_path / "renamed.pt"
    save_checkpoint(renamed, model, Vocabulary(tuple(rename.get(t, t) for t in vocab.tokens)),
                    payload["config"])
    raw = _run(capsys, renamed, "--kaldi", *paths).splitlines()
    assert [line.split(" ", 1)[1] for line in raw] == [
        " ".join(rename[p] for p in e.split()) for e in expected]
    folded = _run(capsys, renamed, "--kaldi", "--fold39", *paths).splitlines()
    back = {"ao": "aa", "zh": "sh", "em": "m", "ix": "ih", "s": "s"}
    assert [line.split(" ", 1)[1] for line in folded] == [
        " ".join(back[rename[p]] for p in e.split()) for e in expected]
    ink, ink_paths = ink_checkpoint(tmp_path)
    _fails(capsys, r"--fold39 folds TIMIT phones", ink, "--fold39", ink_paths[0])


def test_lexicon_and_word_lm_keep_to_the_words(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    ckpt, paths = ink_checkpoint(tmp_path)  # lines "ab", "ba b", "abba"
    free = _run(capsys, ckpt, "--kaldi", *paths)
    assert free == "line0 ab\nline1 ba b\nline2 abba\n"
    words = tmp_path / "words.txt"
    words.write_text("ab\nba\nb\nabba\n")
    assert _run(capsys, ckpt, "--kaldi", "--lexicon", words, *paths) == free
    words.write_text("abba\nb\n")  # "ab" and "ba" are no longer words
    out = _run(capsys, ckpt, "--kaldi", "--lexicon", words, *paths).splitlines()
    for line in out:
        assert set(line.split()[1:]) <= {"abba", "b"}, line
    assert out[2] == "line2 abba"
    words.write_text("ab\nba\nb\nabba\n")
    word_lm = tmp_path / "words.arpa"
    write_arpa(train_kneser_ney([["ab"], ["ba", "b"], ["abba"]], 2, ["ab", "ba", "b", "abba"]),
               word_lm)
    assert _run(capsys, ckpt, "--kaldi", "--lexicon", words, "--word-lm", word_lm,
                "--word-lm-weight", "0.3", *paths) == free


def test_tuned_setup_is_what_recog_lm_stored(speech: tuple, tmp_path: Path,  # noqa: F811
                                             capsys: pytest.CaptureFixture) -> None:
    ckpt, paths, expected = speech
    lm = tmp_path / "tokens.arpa"
    labels = [e.split() for e in expected]
    write_arpa(train_kneser_ney(labels, 2, sorted({t for s in labels for t in s})), lm)
    opts = DecodeOptions(method="beam", lm=str(lm), **{**vars(BeamOptions()), "beam": 4})
    setup = ckpt.parent / "decode_beam_lm.json"
    write_tuned_setup(setup, opts, {"lm_weight": 0.3, "insertion_bonus": 0.5, "PER": 1.0})
    stored = json.loads(setup.read_text())
    assert (stored["lm"], stored["lm_weight"], stored["beam"]) == (str(lm.resolve()), 0.3, 4)
    tuned = json.loads(_run(capsys, ckpt, "--json", "--tuned", "beam_lm", *paths))
    explicit = json.loads(_run(capsys, ckpt, "--json", "--beam", "4", "--lm", lm,
                               "--lm-weight", "0.3", "--insertion-bonus", "0.5", *paths))
    assert tuned == explicit
    assert [r["text"] for r in tuned] == expected
    for r in tuned:  # fused = acoustic + 0.3 LM + 0.5 per token
        assert r["score"] == pytest.approx(r["acoustic"] + 0.3 * r["lm"] + 0.5 * len(r["tokens"]),
                                           abs=1e-4)
    _fails(capsys, r"decode_nothing.json: no tuned decoding set-up", ckpt, "--tuned", "nothing",
           paths[0])


def test_ink_whose_time_goes_back_is_refused_naming_the_point(tmp_path: Path) -> None:
    from recog.data.manifest import read_json_strokes
    from recog.data.utterance import DataError

    path = tmp_path / "line.json"
    ok = [[[0, 0, 0.0], [1, 1, 0.01]], [[2, 0, 0.05], [3, 1, 0.06]]]
    path.write_text(json.dumps({"strokes": ok}))
    assert [s.shape for s in read_json_strokes(path)] == [(2, 3), (2, 3)]
    within = [[[0, 0, 0.0], [1, 1, 0.02], [2, 2, 0.01]]]
    path.write_text(json.dumps({"strokes": within}))
    with pytest.raises(DataError, match=r"line.json: stroke 0, point 2: time 0.01 is before"):
        read_json_strokes(path)
    across = [[[0, 0, 0.5], [1, 1, 0.6]], [[2, 0, 0.1], [3, 1, 0.2]]]  # strokes swapped
    path.write_text(json.dumps({"strokes": across}))
    with pytest.raises(DataError, match=r"stroke 1, point 0: time 0.1 is before"):
        read_json_strokes(path)


def test_transcribe_warps_are_the_hand_made_average(speech: tuple,  # noqa: F811
                                                    capsys: pytest.CaptureFixture) -> None:
    """--warps 0.9,1.1: per file, the best path of the posteriors averaged over the
    features at both warps; --warps 1 is the plain transcription."""
    ckpt, paths, _ = speech
    plain = json.loads(_run(capsys, ckpt, *paths, "--json"))
    assert json.loads(_run(capsys, ckpt, *paths, "--json", "--warps", "1")) == plain
    warped = json.loads(_run(capsys, ckpt, *paths, "--json", "--warps", "0.9,1.1"))
    model, vocab, _ = load_checkpoint(ckpt)
    model.eval()
    opts = AudioFeatureOptions()  # the fixture's front end
    moved = 0
    for path, plain_r, r in zip(paths, plain, warped, strict=True):
        samples, rate = sf.read(path, dtype="float32")
        runs = []
        for w in (0.9, 1.1):
            x, n = pad([audio_features(torch.from_numpy(samples), rate, opts, warp=w)],
                       opts.dim)
            with torch.no_grad():
                runs.append(model(x, n)[0][0].numpy())
        ref = _log_mean_exp(runs)
        best = ref.argmax(1)
        tokens = [vocab.tokens[t] for k, t in enumerate(best)
                  if t != 0 and (k == 0 or t != best[k - 1])]
        assert r["tokens"] == tokens
        assert r["score"] == pytest.approx(ref.max(1).sum(), abs=1e-3)
        moved += abs(r["score"] - plain_r["score"]) > 1e-3
    assert moved  # the warps reached the front end


def test_bad_warps_are_refused(speech: tuple, tmp_path: Path,  # noqa: F811
                               capsys: pytest.CaptureFixture) -> None:
    ckpt, paths, _ = speech
    _fails(capsys, r"decode.warps: \[3.0\] outside \[0.5, 2.0\]", ckpt, paths[0],
           "--warps", "1,3")
    ink, lines = ink_checkpoint(tmp_path)
    _fails(capsys, r"decode.warps warps a speech front end's mel filterbank: this is an? "
           r"ink model", ink, lines[0], "--warps", "0.9,1.1")


@pytest.mark.parametrize("flag,value", [("--beam", "0"), ("--beam", "-2"), ("--nbest", "0"),
                                        ("--batch-frames", "0")])
def test_counts_below_one_are_refused_naming_the_flag(speech: tuple,  # noqa: F811
                                                      capsys: pytest.CaptureFixture,
                                                      flag: str, value: str) -> None:
    """--beam 0 decoded greedily and --batch-frames 0 ran (one file a batch); --beam -2
    failed naming decode.beam, a key this verb does not take."""
    ckpt, wavs = speech[0], speech[1]
    with pytest.raises(SystemExit) as stop:
        transcribe([str(ckpt), str(wavs[0]), flag, value])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert f"argument {flag}: a whole number >= 1, not '{value}'" in err, err
