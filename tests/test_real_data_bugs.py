"""Bugs found on real data: transcribe's Kaldi text, segments past their audio, TIMIT audio
without labels, and the fine-tuning transfer between phones and characters."""

import json
import logging
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import recog.stages.finetune
from recog.cli import score, transcribe
from recog.config import Config, CorpusConfig, PrepareConfig
from recog.data.manifest import Tokenizer, read_kaldi_dir, read_manifest
from recog.data.timit import read_timit
from recog.data.utterance import DataError
from recog.finetune import FinetuneOptions, token_kind, transfer_rule
from recog.models.checkpoint import load_checkpoint
from recog.stages.finetune import finetune
from recog.tokens import Vocabulary
from tests.test_finetune import _checkpoint
from tests.test_transcribe import ink_checkpoint
from tests.timit_tree import make_tree

# 1. recog-transcribe --kaldi prints what hyp.txt holds


def test_kaldi_output_scores_like_hyp_txt(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt, paths = ink_checkpoint(tmp_path)
    transcribe([str(ckpt), "--kaldi", str(paths[1]), str(paths[2])])
    out = capsys.readouterr().out
    (tmp_path / "hyp.txt").write_text(out)
    (tmp_path / "ref.txt").write_text("line1 ba b\nline2 abba\n")
    score([str(tmp_path / "ref.txt"), str(tmp_path / "hyp.txt"), "--cer",
           "--json", str(tmp_path / "cer.json")])
    capsys.readouterr()
    cer = json.loads((tmp_path / "cer.json").read_text())
    assert (cer["n"], cer["err"]) == (8, 0)  # "ba b" and "abba": 4 + 4 characters
    assert out == "line1 ba b\nline2 abba\n"  # the text's words, as hyp.txt has them


# 2. a segment past the end of its audio is caught when the manifest is read


def _one_second(path: Path) -> Path:
    sf.write(path, np.zeros(16000, dtype=np.float32), 16000, subtype="PCM_16")
    return path


def test_manifest_segment_past_the_audio(tmp_path: Path) -> None:
    _one_second(tmp_path / "a.wav")
    entries = [{"id": "u1", "source": "a.wav", "text": "aa", "offset": 0.2, "duration": 0.5},
               {"id": "u2", "source": "a.wav", "text": "aa", "offset": 0.5, "duration": 0.505},
               {"id": "u3", "source": "a.wav", "text": "aa", "offset": 0.6, "duration": 0.5}]
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries))
    with pytest.raises(DataError) as err:
        read_manifest(manifest, Tokenizer("phones"))
    assert (err.value.path, err.value.line) == (str(manifest), 3)
    assert "segment ends at 1.100s" in err.value.reason and "(1.000s)" in err.value.reason
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries[:2]))
    assert [u.id for u in read_manifest(manifest, Tokenizer("phones"))] == ["u1", "u2"]
    offset_only = {"id": "u4", "source": "a.wav", "text": "aa", "offset": 1.5}
    manifest.write_text(json.dumps(offset_only) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl:1: segment ends at 1.500s"):
        read_manifest(manifest, Tokenizer("phones"))


def test_kaldi_segment_past_the_audio(tmp_path: Path) -> None:
    rec = _one_second(tmp_path / "rec.wav")
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "wav.scp").write_text(f"rec {rec}\n")
    (folder / "text").write_text("u1 aa\nu2 iy\n")
    (folder / "utt2spk").write_text("u1 s\nu2 s\n")
    (folder / "segments").write_text("u1 rec 0.0 0.6\nu2 rec 0.6 1.25\n")
    with pytest.raises(DataError) as err:
        read_kaldi_dir(folder, Tokenizer("phones"))
    assert (err.value.path, err.value.line) == (str(folder / "segments"), 2)
    assert "segment ends at 1.250s" in err.value.reason and "(1.000s)" in err.value.reason
    (folder / "segments").write_text("u1 rec 0.0 0.6\nu2 rec 0.6 1.0\n")
    utts = read_kaldi_dir(folder, Tokenizer("phones"))
    assert [{"offset": u.offset, "duration": u.duration} for u in utts] == [
        {"offset": 0.0, "duration": 0.6}, {"offset": 0.6, "duration": pytest.approx(0.4)}]


# 3. TIMIT audio without a .PHN is listed, and explains an empty split


def test_timit_audio_without_phn_is_listed(tmp_path: Path) -> None:
    base = make_tree(tmp_path, "redist")  # with .WAV.wav copies: each file counts once
    (base / "TRAIN" / "DR1" / "FXYZ0" / "SX37.PHN").unlink()
    corpus = read_timit(tmp_path)
    assert [(e.path, e.reason) for e in corpus.rejected] == [
        (str(base / "TRAIN" / "DR1" / "FXYZ0" / "SX37.WAV"), "no .PHN for SX37.WAV")]
    assert len(corpus.splits["train"]) == 5


def test_timit_split_empty_for_want_of_phn(tmp_path: Path) -> None:
    base = make_tree(tmp_path)
    for phn in (base / "TEST" / "DR1" / "MDAB0").glob("*.PHN"):  # the core-test speaker
        phn.unlink()
    with pytest.raises(DataError, match=r"split 'test' is empty: 3 audio file\(s\) of its "
                       r"speakers had no \.PHN"):
        read_timit(tmp_path)
    corpus = read_timit(tmp_path, skip_bad=True)
    reasons = sorted(e.reason for e in corpus.rejected)
    assert reasons == ["no .PHN for SI1027.WAV", "no .PHN for SX127.WAV",
                       "no .PHN for SX37.WAV",
                       "split 'test' is empty: 3 audio file(s) of its speakers had no .PHN"]


# 4. fine-tuning: characters do not inherit the rows of same-spelled phones

PHONES = Vocabulary.from_symbols(["aa", "iy", "s", "z"])
CHARS = Vocabulary.from_symbols([" ", "a", "s", "z"])


def test_token_kinds_and_rules() -> None:
    assert token_kind({"name": "timit", "tokens": "chars"}) == "phones"
    assert token_kind(CorpusConfig(name="manifest", root="/x", tokens="chars")) == "chars"
    assert token_kind({"name": "manifest", "modality": "ink", "tokens": "chars"}) == "chars"
    assert token_kind({"name": "kaldi_dir", "tokens": "list"}) == "list"
    assert token_kind({"name": "fsdd"}) == "chars"
    assert token_kind({"name": "fsdd", "tokens": "words"}) == "words"
    assert transfer_rule("auto", "chars", "words") == "fresh"
    assert transfer_rule("auto", "words", "list") == "by_name"
    assert transfer_rule("auto", "phones", "chars") == "fresh"
    assert transfer_rule("auto", "phones", "phones") == "by_name"
    assert transfer_rule("by_name", "phones", "chars") == "by_name"
    assert transfer_rule("fresh", "phones", "phones") == "fresh"
    with pytest.raises(ValueError, match="finetune.transfer must be one of"):
        transfer_rule("spelling", "phones", "chars")


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tokens: str, vocab: Vocabulary,
         transfer: str = "auto") -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    """Fine-tune a phone checkpoint onto a corpus of ``tokens``, the training replaced by
    the model's initialisation; the old model, the new one and the transfer."""
    ckpt = tmp_path / "phones.pt"
    if not ckpt.exists():
        _checkpoint(ckpt, PHONES)  # trained on TIMIT: phones
    base, _, _ = load_checkpoint(ckpt)
    made = {}

    def train(cfg: Config, config: dict, init: object) -> dict:
        made["model"], _ = init(vocab, types.SimpleNamespace(dim=base.input_dim))
        return {}

    monkeypatch.setattr(recog.stages.finetune, "train", train)
    cfg = Config(corpus=CorpusConfig(name="manifest", root="/y", tokens=tokens),
                 prepare=PrepareConfig(out=str(tmp_path / "prep")))
    result = finetune(cfg, FinetuneOptions(checkpoint=str(ckpt), transfer=transfer))
    return base, made["model"], result["transfer"]


def _same_row(old: torch.nn.Module, new: torch.nn.Module, old_vocab: Vocabulary,
              new_vocab: Vocabulary, token: str) -> bool:
    i, j = new_vocab.index[token], old_vocab.index[token]
    return torch.equal(new.output.weight[i], old.output.weight[j])


def test_phones_to_chars_gets_fresh_rows_under_auto(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
        ) -> None:
    with caplog.at_level(logging.INFO, logger="recog.finetune"):
        old, new, moved = _run(tmp_path, monkeypatch, "chars", CHARS)
    assert moved == {"rule": "fresh", "kept": ["<blk>"], "new": [" ", "a", "s", "z"],
                     "dropped": ["aa", "iy", "s", "z"]}
    assert "output rows transferred fresh (finetune.transfer=auto, phones tokens to chars)" \
        in caplog.text
    assert _same_row(old, new, PHONES, CHARS, "<blk>")
    assert not _same_row(old, new, PHONES, CHARS, "s")
    assert not _same_row(old, new, PHONES, CHARS, "z")


def test_by_name_still_copies_and_same_kind_copies_under_auto(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new, moved = _run(tmp_path, monkeypatch, "chars", CHARS, transfer="by_name")
    assert moved == {"rule": "by_name", "kept": ["<blk>", "s", "z"], "new": [" ", "a"],
                     "dropped": ["aa", "iy"]}
    assert _same_row(old, new, PHONES, CHARS, "s")
    other = Vocabulary.from_symbols(["s", "sh", "aa"])
    old, new, moved = _run(tmp_path, monkeypatch, "phones", other)
    assert moved == {"rule": "by_name", "kept": ["<blk>", "s", "aa"], "new": ["sh"],
                     "dropped": ["iy", "z"]}
    assert _same_row(old, new, PHONES, other, "s") and _same_row(old, new, PHONES, other, "aa")
    _, new, moved = _run(tmp_path, monkeypatch, "phones", other, transfer="fresh")
    assert moved["rule"] == "fresh" and not _same_row(old, new, PHONES, other, "s")
