"""Bring-your-own corpora: JSONL manifests and Kaldi data dirs, and their bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from recog import pipeline
from recog.batching import bucket_batches, iterate
from recog.config import Config, CorpusConfig, DataConfig, PrepareConfig
from recog.data.manifest import (
    Tokenizer,
    read_json_strokes,
    read_kaldi_dir,
    read_manifest,
    read_strokes,
)
from recog.data.utterance import DataError
from tests.byo_corpus import make_byo
from tests.iamondb_tree import stroke_xml

PHONES = Tokenizer("phones")


def _cfg(name: str, root: Path, out: Path, **corpus: object) -> Config:
    return Config(corpus=CorpusConfig(name=name, root=str(root), **corpus),
                  prepare=PrepareConfig(out=str(out)),
                  data=DataConfig(cache_dir=str(out / "features")))


def test_kaldi_dir_and_manifest_give_identical_features_and_batches(tmp_path: Path) -> None:
    manifest, kaldi = make_byo(tmp_path)
    cfgs = [_cfg("manifest", manifest, tmp_path / "prep_m"),
            _cfg("kaldi_dir", kaldi, tmp_path / "prep_k")]
    batches = []
    for cfg in cfgs:
        summary = pipeline.prepare(cfg)
        assert summary["splits"]["train"]["utterances"] == 6
        task = pipeline.get_task(cfg)
        vocab = task.vocabulary(pipeline.load_split(cfg, "train"))
        ds, _ = pipeline.dataset(cfg, "train", vocab)
        batches.append((vocab, ds, list(iterate(ds, bucket_batches(ds.lengths, 200)))))
    (va, da, ba), (vb, db, bb) = batches
    assert va == vb and da.ids == db.ids and len(ba) == len(bb) > 1
    for i in range(len(da)):
        assert np.array_equal(da.cache[i], db.cache[i])
    for x, y in zip(ba, bb, strict=True):
        assert x.indices == y.indices
        for field in ("feats", "lengths", "targets", "target_lengths"):
            assert torch.equal(getattr(x, field), getattr(y, field)), field
    # a segment's features are those of the same samples cut out of the recording
    utts = read_manifest(manifest / "train.jsonl", PHONES)
    seg = utts[1]
    samples, rate = sf.read(seg.source, dtype="float32")
    start = round(seg.offset * rate)
    alone = tmp_path / "alone.wav"
    sf.write(alone, samples[start:start + round(seg.duration * rate)], rate,
             subtype="FLOAT")
    task = pipeline.get_task(cfgs[0])
    whole = task.extract(type(seg)("x", "s", str(alone), seg.tokens))
    assert torch.allclose(task.extract(seg), whole, atol=1e-3)


def test_manifest_fields_paths_and_tokenizers(tmp_path: Path) -> None:
    manifest, _ = make_byo(tmp_path)
    utts = read_manifest(manifest / "dev.jsonl", PHONES)
    assert [u.speaker for u in utts] == ["spk0", "spk1"]
    assert Path(utts[0].source) == (tmp_path / "audio/dev0.wav").resolve()
    assert utts[0].tokens == tuple(utts[0].text.split())
    chars = Tokenizer("chars")(" ab  c ", manifest, 1)
    assert chars == ("a", "b", " ", "c")
    assert Tokenizer("list", ("ab", "c"))("ab c ab", manifest, 1) == ("ab", "c", "ab")
    assert PHONES(["x", "y"], manifest, 1) == ("x", "y")


def _manifest(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("bad,reason", [
    ("{not json", "not JSON"),
    ('{"id": "b", "text": "aa"}', "missing field(s): source"),
    ('{"id": "b", "source": "a.wav"}', "missing field(s): text or tokens"),
    ('{"id": "b", "source": "nowhere.wav", "text": "aa"}', "nowhere.wav: no such file"),
    ('{"id": "b", "source": "junk.wav", "text": "aa"}', "junk.wav: unreadable audio"),
    ('{"id": "a", "source": "a.wav", "text": "aa"}', "'a' appears twice"),
    ('{"id": "b", "source": "a.wav", "text": "aa", "offset": -1}', "offset must be"),
])
def test_bad_manifest_line_names_file_and_line(tmp_path: Path, bad: str, reason: str) -> None:
    sf.write(tmp_path / "a.wav", np.zeros(1600, np.float32), 16000)
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really a wave file")
    path = _manifest(tmp_path, '{"id": "a", "source": "a.wav", "text": "aa iy"}', "", bad)
    with pytest.raises(DataError) as e:
        read_manifest(path, PHONES)
    assert str(e.value).startswith(f"{path}:3: ") and reason in str(e.value)


def test_token_not_in_list_or_vocabulary(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros(1600, np.float32), 16000)
    path = _manifest(tmp_path, '{"id": "a", "source": "a.wav", "text": "aa zz"}')
    with pytest.raises(DataError, match=r"m.jsonl:1: token\(s\) \['zz'\] not in the token list"):
        read_manifest(path, Tokenizer("list", ("aa", "iy")))
    # a vocabulary from elsewhere (a checkpoint's) rejects the token, naming split and line
    manifest, _ = make_byo(tmp_path / "c")
    cfg = _cfg("manifest", manifest, tmp_path / "prep")
    pipeline.prepare(cfg)
    vocab = pipeline.get_task(cfg).vocabulary(pipeline.load_split(cfg, "train"))
    from recog.tokens import Vocabulary

    smaller = Vocabulary(vocab.tokens[:-1])
    with pytest.raises(DataError, match=rf"train.jsonl:\d+: .*\['{vocab.tokens[-1]}'\] not in "
                       "the model's vocabulary"):
        pipeline.dataset(cfg, "train", smaller)


def test_bad_manifest_writes_nothing(tmp_path: Path) -> None:
    manifest, _ = make_byo(tmp_path)
    with (manifest / "test.jsonl").open("a") as f:
        f.write('{"id": "late", "source": "../audio/missing.wav", "text": "aa"}\n')
    out = tmp_path / "prep"
    with pytest.raises(DataError, match="test.jsonl:3: .*missing.wav: no such file"):
        pipeline.prepare(_cfg("manifest", manifest, out))
    assert not out.exists() or not any(out.iterdir())


def test_kaldi_dir_errors_name_file_and_line(tmp_path: Path) -> None:
    _, kaldi = make_byo(tmp_path)
    scp = kaldi / "dev" / "wav.scp"
    scp.write_text(scp.read_text() + "spk9_x sox a.wav -t wav - |\n")
    with pytest.raises(DataError, match=r"wav.scp:3: spk9_x: only file paths"):
        read_kaldi_dir(kaldi / "dev", PHONES)
    (kaldi / "test" / "utt2spk").unlink()
    with pytest.raises(DataError, match="utt2spk: missing file"):
        read_kaldi_dir(kaldi / "test", PHONES)
    seg = kaldi / "train" / "segments"
    seg.write_text(seg.read_text().replace(" train0 0.0 ", " train0 0.0x ", 1))
    with pytest.raises(DataError, match=r"segments:1: start and end must be seconds"):
        read_kaldi_dir(kaldi / "train", PHONES)


@pytest.mark.parametrize("split, table", [("train", "segments"), ("dev", "wav.scp")])
def test_kaldi_utterance_without_a_transcript_is_an_error_not_dropped(
        tmp_path: Path, split: str, table: str) -> None:
    """An utterance in utt2spk (and segments, or wav.scp without segments) but not in text
    was left out without a word until session 14; now the first table naming it, and its
    line, are in the error."""
    _, kaldi = make_byo(tmp_path)
    text = kaldi / split / "text"
    lines = text.read_text().splitlines()
    dropped = lines[0].split()[0]
    assert len(read_kaldi_dir(kaldi / split, PHONES)) == len(lines)
    text.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(DataError, match=rf"utt2spk:1: utterance '{dropped}' has no line in "):
        read_kaldi_dir(kaldi / split, PHONES)
    (kaldi / split / "utt2spk").write_text("".join(
        line + "\n" for line in (kaldi / split / "utt2spk").read_text().splitlines()[1:]))
    with pytest.raises(DataError, match=rf"{table}:1: utterance '{dropped}' has no line in "):
        read_kaldi_dir(kaldi / split, PHONES)


def test_segment_past_the_end_is_an_error(tmp_path: Path) -> None:
    manifest, _ = make_byo(tmp_path)
    cfg = _cfg("manifest", manifest, tmp_path / "prep")
    utt = read_manifest(manifest / "train.jsonl", PHONES)[2]
    late = type(utt)(utt.id, utt.speaker, utt.source, utt.tokens, "",
                     offset=utt.offset, duration=100.0)
    with pytest.raises(DataError, match="runs past the end"):
        pipeline.get_task(cfg).extract(late)


def test_json_strokes_read_like_the_xml(tmp_path: Path) -> None:
    xml = tmp_path / "l.xml"
    xml.write_text(stroke_xml("ab"))
    strokes = read_strokes(xml)
    path = tmp_path / "l.json"
    path.write_text(json.dumps({"strokes": [s.tolist() for s in strokes]}))
    again = read_strokes(path)
    assert all(np.array_equal(a, b) for a, b in zip(strokes, again, strict=True))
    path.write_text(json.dumps({"strokes": [[[0, 0], [1, 1]], [[2, 0]]]}))
    assert read_json_strokes(path)[1].tolist() == [[2.0, 0.0, 0.02]]
    path.write_text(json.dumps({"strokes": [[[0, 0, 0, 0]]]}))
    with pytest.raises(DataError, match="stroke 0 must be"):
        read_json_strokes(path)
