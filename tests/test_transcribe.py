"""recog-transcribe with tiny models trained here: WAV, FLAC at 44.1 kHz stereo, IAM-OnDB XML
and JSON strokes in, the trained transcriptions out; bad input stops before any output."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio.functional
from omegaconf import OmegaConf

from recog.cli import transcribe
from recog.config import Config, CorpusConfig, PrepareConfig
from recog.data.audio import read_audio
from recog.data.manifest import read_strokes
from recog.data.utterance import Utterance
from recog.decode.greedy import greedy_decode
from recog.features.audio import AudioFeatureOptions
from recog.features.pen import PenFeatureOptions
from recog.models import CTCModel, ModelOptions, save_checkpoint
from recog.tasks import InkTask, SpeechTask
from recog.tokens import Vocabulary
from tests.iamondb_tree import stroke_xml
from tests.timit_tree import RATE, utterance


def _overfit(feats: list[torch.Tensor], labels: list[list[str]], vocab: Vocabulary,
             steps: int = 400, normalize: str = "global") -> CTCModel:
    """A one-layer BLSTM trained on these utterances until greedy decoding gives them back;
    with ``normalize="utterance"`` on each utterance standardised by its own frames."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only contend
    try:
        return _train(feats, labels, vocab, steps, normalize)
    finally:
        torch.set_num_threads(threads)


def _train(feats: list[torch.Tensor], labels: list[list[str]], vocab: Vocabulary,
           steps: int, normalize: str = "global") -> CTCModel:
    model = CTCModel(feats[0].shape[1], len(vocab),
                     ModelOptions(hidden=32, layers=1, normalize=normalize))
    if normalize == "global":
        cat = torch.cat(feats)
        model.set_normalization(cat.mean(0), cat.std(0))
    else:  # by hand: the model's own statistics stay 0 and 1
        feats = [(f - f.mean(0)) / f.std(0, unbiased=False) for f in feats]
    lengths = torch.tensor([len(f) for f in feats])
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    targets = [vocab.encode(t) for t in labels]
    flat = torch.tensor([i for t in targets for i in t])
    target_lengths = torch.tensor([len(t) for t in targets])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        log_probs, out_lens = model(x, lengths)
        if greedy_decode(log_probs, out_lens) == targets:
            return model.eval()
        loss = F.ctc_loss(log_probs.transpose(0, 1), flat, out_lens, target_lengths)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    raise AssertionError("the tiny model did not learn its training utterances")


def _config(**corpus: object) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(Config(corpus=CorpusConfig(**corpus),
                                                              prepare=PrepareConfig(out="/p"))))


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], list[str]]:
    """A tone model, its three training WAVs and their phone strings."""
    tmp = tmp_path_factory.mktemp("speech")
    rng = np.random.default_rng(3)
    task = SpeechTask(AudioFeatureOptions(), "phones")
    paths, labels, feats = [], [], []
    for k in range(3):
        audio, segs = utterance(rng, 4)
        paths.append(tmp / f"u{k}.wav")
        sf.write(paths[-1], audio, RATE, subtype="PCM_16")
        labels.append([lab for _, _, lab in segs if lab not in ("h#", "q")])
        feats.append(task.extract(Utterance(f"u{k}", "s", str(paths[-1]), ())))
    vocab = Vocabulary.from_symbols(sorted({t for seq in labels for t in seq}))
    model = _overfit(feats, labels, vocab)
    ckpt = tmp / "best.pt"
    save_checkpoint(ckpt, model, vocab, _config(name="manifest", root="/x", tokens="phones"))
    return ckpt, paths, [" ".join(seq) for seq in labels]


def test_wav_and_flac_44k_stereo(speech: tuple, tmp_path: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    ckpt, paths, expected = speech
    samples, _ = read_audio(paths[1])
    up = torchaudio.functional.resample(torch.from_numpy(samples), RATE, 44100).numpy()
    flac = tmp_path / "u1 44k.flac"
    sf.write(flac, np.stack([up, up], axis=1), 44100, format="FLAC", subtype="PCM_24")
    assert sf.info(str(flac)).channels == 2 and sf.info(str(flac)).samplerate == 44100
    transcribe([str(ckpt), str(paths[0]), str(flac), str(paths[2])])
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{paths[0]}\t{expected[0]}", f"{flac}\t{expected[1]}",
                     f"{paths[2]}\t{expected[2]}"]
    transcribe([str(ckpt), "--kaldi", str(paths[2])])
    assert capsys.readouterr().out == f"u2 {expected[2]}\n"


def test_a_per_utterance_model_gets_each_file_normalised(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(5)
    task = SpeechTask(AudioFeatureOptions(), "phones")
    paths, labels, feats = [], [], []
    for k in range(3):
        audio, segs = utterance(rng, 4)
        paths.append(tmp_path / f"u{k}.wav")
        sf.write(paths[-1], audio, RATE, subtype="PCM_16")
        labels.append([lab for _, _, lab in segs if lab not in ("h#", "q")])
        feats.append(task.extract(Utterance(f"u{k}", "s", str(paths[-1]), ())))
    vocab = Vocabulary.from_symbols(sorted({t for seq in labels for t in seq}))
    model = _overfit(feats, labels, vocab, normalize="utterance")
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, model, vocab, _config(name="manifest", root="/x", tokens="phones"))
    transcribe([str(ckpt), "--json", *map(str, paths)])
    out = json.loads(capsys.readouterr().out)
    assert [r["tokens"] for r in out] == labels


def test_stereo_is_mixed_down(tmp_path: Path) -> None:
    x = np.linspace(-0.5, 0.5, 800, dtype=np.float32)
    sf.write(tmp_path / "s.wav", np.stack([x, 0.5 * x], axis=1), 8000, subtype="FLOAT")
    mono, rate = read_audio(tmp_path / "s.wav")
    assert rate == 8000 and np.allclose(mono, 0.75 * x)


def ink_checkpoint(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A character model overfitted on three ink lines ("ab", "ba b", "abba") written as
    IAM-OnDB XML files ``line0..2.xml`` in ``tmp_path``: its checkpoint and the files."""
    task = InkTask(PenFeatureOptions())
    texts = ["ab", "ba b", "abba"]
    paths, feats = [], []
    for k, text in enumerate(texts):
        paths.append(tmp_path / f"line{k}.xml")
        paths[-1].write_text(stroke_xml(text))
        feats.append(task.extract(Utterance(f"l{k}", "w", str(paths[-1]), tuple(text))))
    vocab = Vocabulary.from_symbols([" ", "a", "b"])
    model = _overfit(feats, [list(t) for t in texts], vocab)
    ckpt = tmp_path / "ink.pt"
    save_checkpoint(ckpt, model, vocab, _config(name="iamondb", root="/x"))
    return ckpt, paths


def test_ink_xml_and_json_strokes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt, paths = ink_checkpoint(tmp_path)
    as_json = tmp_path / "line1.json"
    as_json.write_text(json.dumps({"strokes": [s.tolist() for s in read_strokes(paths[1])]}))
    transcribe([str(ckpt), str(paths[0]), str(as_json), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert [(r["file"], r["text"], r["tokens"]) for r in out] == [
        (str(paths[0]), "ab", ["a", "b"]), (str(as_json), "ba b", ["b", "a", " ", "b"])]


def test_bad_input_stops_before_any_output(speech: tuple, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    ckpt, paths, _ = speech
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF....WAVEfmt nonsense")

    def refused(argv: list[str], reason: str) -> None:
        with pytest.raises(SystemExit) as e:
            transcribe(argv)
        out, err = capsys.readouterr()
        assert e.value.code == 2 and out == "" and err.startswith("error: "), err
        assert re.search(reason, err), err

    for files, reason in (([paths[0], tmp_path / "gone.wav"], "gone.wav: no such file"),
                          ([paths[0], junk], "junk.wav: unreadable audio"),
                          ([tmp_path / "x.xml"], "no such file")):
        refused([str(ckpt), *map(str, files)], reason)
    payload = torch.load(ckpt, weights_only=True)
    newer = tmp_path / "newer.pt"
    torch.save({**payload, "format_version": 99}, newer)
    refused([str(newer), str(paths[0])],
            r"newer.pt: checkpoint format version 99; this version of recog reads versions "
            "1, 2")
    (tmp_path / "not.pt").write_bytes(b"not a checkpoint")
    refused([str(tmp_path / "not.pt"), str(paths[0])], r"not.pt: not a readable checkpoint")
    (tmp_path / "bad.arpa").write_text("not an ARPA file\n")
    refused([str(ckpt), "--beam", "4", "--lm", str(tmp_path / "bad.arpa"), str(paths[0])],
            "bad.arpa")


def test_beam_search_agrees_with_greedy_on_a_peaky_model(speech: tuple,
                                                         capsys: pytest.CaptureFixture) -> None:
    ckpt, paths, _ = speech
    transcribe([str(ckpt), *map(str, paths)])
    greedy = capsys.readouterr().out
    transcribe([str(ckpt), "--beam", "8", *map(str, paths)])
    assert capsys.readouterr().out == greedy != ""
