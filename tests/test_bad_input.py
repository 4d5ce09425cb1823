"""The bad-input matrix: every bad item is a DataError naming its file (and line where there
is one); where a skip_bad path exists, skip_bad skips it, counts it and lists it."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from recog import pipeline
from recog.config import Config
from recog.data.iamondb import read_iamondb, read_line_strokes
from recog.data.timit import read_timit
from recog.data.utterance import DataError, Rejections, Utterance, read_jsonl
from recog.decode.greedy import greedy_decode
from recog.features.cache import build_cache
from recog.models import CTCModel, ModelOptions
from recog.models.checkpoint import load_checkpoint, save_checkpoint
from recog.tokens import timit_vocabulary
from tests import iamondb_tree, timit_tree

PER_SPEAKER = len([s for s in timit_tree.SENTENCES if not s.startswith("SA")])


def _check(err: DataError, path: Path, line: int | None, words: str) -> None:
    """The error names the file (and line) in its message and says what is wrong."""
    assert err.path == str(path)
    assert err.line == line
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert str(err).startswith(where), str(err)
    assert words in err.reason, err.reason


# --------------------------------------------------------------------------- TIMIT reader
@pytest.fixture
def timit(tmp_path: Path) -> Path:
    """A small TIMIT tree; returns the folder of a training speaker to spoil."""
    return timit_tree.make_tree(tmp_path / "corpus") / "TRAIN" / "DR1" / "FXYZ0"


def _rewrite_audio(wav: Path, **kw: object) -> None:
    samples, rate = sf.read(wav, dtype="float32")
    channels = kw.pop("channels", 1)
    data = np.stack([samples] * channels, axis=1) if channels > 1 else samples
    sf.write(wav, data, kw.pop("rate", rate), format="NIST", **kw)


def _edit_line(path: Path, n: int, edit: Callable[[str], str]) -> None:
    lines = path.read_text().splitlines()
    lines[n - 1] = edit(lines[n - 1])
    path.write_text("\n".join(lines) + "\n")


def _swap(a: int) -> Callable[[str], str]:
    def edit(line: str) -> str:
        s, e, lab = line.split()
        return f"{int(s) - a} {e} {lab}"
    return edit


TIMIT_CASES: dict[str, tuple[Callable[[Path], None], str, int | None, str]] = {
    # name: (spoil the speaker folder, spoiled file, line, words of the reason)
    "truncated NIST header": (
        lambda d: (d / "SX37.WAV").write_bytes((d / "SX37.WAV").read_bytes()[:500]),
        "SX37.WAV", None, "unreadable audio"),
    "truncated NIST body": (
        lambda d: (d / "SX37.WAV").write_bytes((d / "SX37.WAV").read_bytes()[:3000]),
        "SX37.WAV", None, "truncated NIST SPHERE file"),
    "WAV with zero samples": (
        lambda d: sf.write(d / "SX37.WAV", np.zeros(0, np.float32), 16000, format="NIST",
                           subtype="PCM_16"),
        "SX37.WAV", None, "holds no samples"),
    "unsupported sample width": (
        lambda d: _rewrite_audio(d / "SX37.WAV", subtype="PCM_24"),
        "SX37.WAV", None, "16-bit PCM, this file is PCM_24"),
    "undecodable sample width in the header": (
        lambda d: (d / "SX37.WAV").write_bytes((d / "SX37.WAV").read_bytes().replace(
            b"sample_n_bytes -i 2", b"sample_n_bytes -i 5")),
        "SX37.WAV", None, "unreadable audio"),
    "non-integer NIST header field": (
        lambda d: (d / "SX37.WAV").write_bytes((d / "SX37.WAV").read_bytes().replace(
            b"sample_count -i ", b"sample_count -i x")),
        "SX37.WAV", 9, "sample_count is not an integer"),  # header line 9
    "stereo where mono is expected": (
        lambda d: _rewrite_audio(d / "SX37.WAV", channels=2, subtype="PCM_16"),
        "SX37.WAV", None, "mono, this file has 2 channels"),
    "wrong sample rate": (
        lambda d: _rewrite_audio(d / "SX37.WAV", rate=8000, subtype="PCM_16"),
        "SX37.WAV", None, "16 kHz, this file is 8000 Hz"),
    "missing WAV": (lambda d: (d / "SX37.WAV").unlink(), "SX37.WAV", None, "missing"),
    "PHN with overlapping times": (
        lambda d: _edit_line(d / "SX37.PHN", 3, _swap(100)), "SX37.PHN", 3, "overlapping"),
    "PHN past the end of the audio": (
        lambda d: _edit_line(d / "SX37.PHN", 2, lambda ln: f"{ln.split()[0]} 99999999 "
                             f"{ln.split()[2]}"),
        "SX37.PHN", 2, "segment ends at sample 99999999, the audio has"),
    "PHN segment ending before it starts": (
        lambda d: _edit_line(d / "SX37.PHN", 2, lambda ln: f"{ln.split()[1]} 5 "
                             f"{ln.split()[2]}"),
        "SX37.PHN", 2, "before it starts"),
    "unknown phone": (
        lambda d: _edit_line(d / "SX37.PHN", 2, lambda ln: ln.rsplit(" ", 1)[0] + " xx"),
        "SX37.PHN", 2, "unknown phone 'xx'"),
    "PHN with no segments": (
        lambda d: (d / "SX37.PHN").write_text("\n"), "SX37.PHN", None, "no segments"),
    "WRD with a malformed line": (
        lambda d: (d / "SX37.WRD").write_text("0 tone\n"), "SX37.WRD", 1,
        "expected 'start end label'"),
    "missing WRD": (lambda d: (d / "SX37.WRD").unlink(), "SX37.WRD", None, "missing"),
    "empty transcript": (
        lambda d: (d / "SX37.TXT").write_text("0 16000\n"), "SX37.TXT", 1, "empty transcript"),
    "non-ASCII (non-UTF-8) text": (
        lambda d: (d / "SX37.TXT").write_bytes(b"0 16000 Tone\n\xff sentence.\n"),
        "SX37.TXT", 2, "not ASCII text: byte 0xff"),
}


@pytest.mark.parametrize("case", sorted(TIMIT_CASES))
def test_timit_bad_item(timit: Path, case: str) -> None:
    spoil, name, line, words = TIMIT_CASES[case]
    spoil(timit)
    root = timit.parents[3]
    with pytest.raises(DataError) as err:
        read_timit(root)
    _check(err.value, timit / name, line, words)
    corpus = read_timit(root, skip_bad=True)  # skipped, counted and listed
    assert [(e.path, e.line) for e in corpus.rejected] == [(str(timit / name), line)]
    assert len(corpus.splits["train"]) == 2 * PER_SPEAKER - 1
    assert "fxyz0_sx37" not in {u.id for u in corpus.splits["train"]}


def test_timit_root_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        read_timit(tmp_path / "nowhere")
    _check(err.value, tmp_path / "nowhere", None, "not a folder")


# --------------------------------------------------------------------------- IAM-OnDB reader
@pytest.fixture
def ink(tmp_path: Path) -> Path:
    return iamondb_tree.make_tree(tmp_path / "corpus")


LINE = "lineStrokes/b02/b02-010/b02-010x-01.xml"


def _replace_first(path: Path, old: str, new: str) -> int:
    """Replace the first ``old`` in a file; return the line it was on."""
    text = path.read_text(encoding="iso-8859-1")
    i = text.index(old)
    path.write_bytes((text[:i] + new + text[i + len(old):]).encode("iso-8859-1"))
    return text[:i].count("\n") + 1


def _one_point_line(p: Path) -> int:
    """Make the line's whole ink one stroke of one point; return the Stroke's line."""
    text = p.read_text(encoding="iso-8859-1")
    head, tail = text.split("<StrokeSet>")[0], text.split("</StrokeSet>")[1]
    p.write_text(head + '<StrokeSet>\n<Stroke><Point x="1" y="2" time="0.5"/></Stroke>\n'
                 "</StrokeSet>" + tail, encoding="iso-8859-1")
    return head.count("\n") + 2


INK_CASES: dict[str, tuple[Callable[[Path], int | None], str, str]] = {
    # name: (spoil the line file, return the line named), reason words
    "malformed XML": (lambda p: _replace_first(p, '"/>\n      <Point', '">\n      <Point'),
                      "malformed XML", "mismatched tag"),
    "truncated XML": (
        lambda p: (p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
                   p.read_text(encoding="iso-8859-1").count("\n") + 1)[1],
        "malformed XML", ""),
    "stroke with one point, alone on the line": (_one_point_line, "single point", ""),
    "stroke with no points": (
        lambda p: _replace_first(p, "<StrokeSet>", "<StrokeSet>\n    <Stroke></Stroke>") + 1,
        "Stroke has no points", ""),
    "non-numeric coordinate": (
        lambda p: _replace_first(p, 'x="1000"', 'x="10OO"'), "numeric x, y", ""),
    "NaN coordinate": (lambda p: _replace_first(p, 'y="1000"', 'y="nan"'), "out of range", ""),
    "unknown XML encoding (found by the fuzzer)": (
        lambda p: _replace_first(p, "ISO-8859-1", "ISO-8859-0"), "malformed XML",
        "unknown encoding: ISO-8859-0"),
    "non-UTF-8 bytes in an XML declared UTF-8": (
        lambda p: (_replace_first(p, "ISO-8859-1", "UTF-8"),
                   _replace_first(p, 'colour="black"', 'colour="bl\xe9ck"'))[1],
        "malformed XML", "not well-formed"),
}


@pytest.mark.parametrize("case", sorted(INK_CASES))
def test_ink_bad_line_file(ink: Path, case: str) -> None:
    spoil, words, more = INK_CASES[case]
    path = ink / LINE
    line = spoil(path)
    with pytest.raises(DataError) as err:
        read_iamondb(ink.parent)
    if case == "malformed XML":  # expat reports where it noticed: at or after the edit
        assert err.value.line is not None and line is not None and err.value.line >= line
        line = err.value.line
    _check(err.value, path, line, words)
    assert more in err.value.reason
    corpus = read_iamondb(ink.parent, skip_bad=True)
    assert [(e.path, e.line) for e in corpus.rejected] == [(str(path), line)]
    assert [u.id for u in corpus.splits["val1"]] == ["b02-010x-02"]


def test_one_point_stroke_among_others_is_a_dot(ink: Path) -> None:
    """A one-point stroke beside others is a dot (i-dots are written so), not an error."""
    path = ink / LINE
    _replace_first(path, "</StrokeSet>", '<Stroke><Point x="1010" y="900" time="200.0"/>'
                   "</Stroke>\n  </StrokeSet>")
    strokes = read_line_strokes(path)
    assert [len(s) for s in strokes][-1] == 1
    from recog.features.pen import PenFeatureOptions, pen_features
    for kind in ("compact", "graves"):
        assert torch.isfinite(pen_features(strokes, PenFeatureOptions(kind=kind))).all()


def test_missing_split_file(ink: Path) -> None:
    (ink / "testset_v.txt").unlink()
    with pytest.raises(DataError) as err:
        read_iamondb(ink.parent)
    _check(err.value, ink / "testset_v.txt", None, "split file is missing")


def test_split_file_with_a_bad_form_id(ink: Path) -> None:
    (ink / "testset_t.txt").write_text("c03-020\nnot a form\n")
    with pytest.raises(DataError) as err:
        read_iamondb(ink.parent)
    _check(err.value, ink / "testset_t.txt", 2, "not a form id: 'not a form'")


def test_transcription_without_csr(ink: Path) -> None:
    path = ink / "ascii/a01/a01-000/a01-000u.txt"
    path.write_text("OCR:\n\nab\n")
    with pytest.raises(DataError) as err:
        read_iamondb(ink.parent)
    _check(err.value, path, None, "no 'CSR:' section")
    corpus = read_iamondb(ink.parent, skip_bad=True)
    assert [e.path for e in corpus.rejected] == [str(path)]
    assert [u.id for u in corpus.splits["train"]] == ["a01-001z-01", "a01-001z-02"]


def test_corrupt_archive(tmp_path: Path) -> None:
    base = iamondb_tree.make_tree(tmp_path / "corpus", archives=True)
    archive = base / "ascii-all.tar.gz"
    archive.write_bytes(gzip.compress(b"this is not a tar archive" * 40))
    with pytest.raises(DataError) as err:
        read_iamondb(base, unpack_dir=tmp_path / "unpacked")
    _check(err.value, archive, None, "unreadable archive")


def test_line_file_with_an_odd_name_is_listed(ink: Path) -> None:
    odd = ink / "lineStrokes/b02/b02-010/b02-010x-01-copy.xml"
    odd.write_bytes((ink / LINE).read_bytes())
    corpus = read_iamondb(ink.parent)
    assert [(e.path, "not a line file name" in e.reason) for e in corpus.rejected] == [
        (str(odd), True)]


# --------------------------------------------------------------------------- prepared splits
JSONL_CASES = {
    "line that is not JSON": (b'{"id": "a", "source": "x", "tokens": ["a"]}\n{"id": \n', 2,
                              "not a JSON object"),
    "JSON that is not an object": (b'[1, 2]\n', 1, "not a JSON object but a list"),
    "missing field": (b'{"id": "a", "tokens": ["a"]}\n', 1, "missing field(s) source"),
    "tokens of the wrong type": (b'{"id": "a", "source": "x", "tokens": [1]}\n', 1,
                                 "'tokens' must be"),
    "non-UTF-8 line": (b'{"id": "a", "source": "x", "tokens": "a"}\n{"id": "\xff"}\n', 2,
                       "not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(JSONL_CASES))
def test_prepared_split_file(tmp_path: Path, case: str) -> None:
    data, line, words = JSONL_CASES[case]
    path = tmp_path / "train.jsonl"
    path.write_bytes(data)
    with pytest.raises(DataError) as err:
        read_jsonl(path)
    _check(err.value, path, line, words)


def test_missing_prepared_split_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        read_jsonl(tmp_path / "dev.jsonl")
    _check(err.value, tmp_path / "dev.jsonl", None, "no such manifest file")


# --------------------------------------------------------------------------- features
def _utts(n: int) -> list[Utterance]:
    return [Utterance(f"u{i}", "s", f"/data/u{i}.wav", ("a",)) for i in range(n)]


def _extract_with(bad: int, value: np.ndarray) -> Callable[[Utterance], torch.Tensor]:
    def extract(u: Utterance) -> torch.Tensor:
        return torch.from_numpy(value) if u.id == f"u{bad}" else torch.ones(4, 3)
    return extract


FEATURE_CASES = {
    "NaN in features": (np.full((4, 3), np.nan, np.float32), "NaN or inf (first at frame 0"),
    "inf in features": (np.array([[0, 0, 0], [0, np.inf, 0]], np.float32), "at frame 1 of 2"),
    "no feature frames": (np.zeros((0, 3), np.float32), "no feature frames"),
    "feature dimension differs": (np.zeros((4, 5), np.float32), "5 feature dimensions"),
}


@pytest.mark.parametrize("case", sorted(FEATURE_CASES))
def test_bad_features(tmp_path: Path, case: str) -> None:
    value, words = FEATURE_CASES[case]
    utts = _utts(4)
    with pytest.raises(DataError) as err:
        build_cache(utts, _extract_with(2, value), {}, tmp_path, "train", progress=False)
    _check(err.value, Path("/data/u2.wav"), None, words)
    assert "utterance u2" in err.value.reason
    assert not list(tmp_path.glob("*.json")) and not list(tmp_path.glob(".*.tmp"))
    cache = build_cache(utts, _extract_with(2, value), {}, tmp_path, "train", progress=False,
                        skip_bad=True)
    assert list(cache.bad) == [2] and cache.lengths.tolist() == [4, 4, 0, 4]
    assert all(np.array_equal(cache[i], np.ones((4, 3))) for i in (0, 1, 3))


def test_audio_with_nan_samples(tmp_path: Path) -> None:
    from recog.data.audio import read_audio

    path = tmp_path / "nan.wav"
    sf.write(path, np.array([0.0, 0.1, np.nan, 0.2], np.float32), 16000, subtype="FLOAT")
    with pytest.raises(DataError) as err:
        read_audio(path)
    _check(err.value, path, None, "non-finite sample (NaN or inf) at sample 2")


def test_audio_shorter_than_a_frame(tmp_path: Path) -> None:
    from recog.features.audio import AudioFeatureOptions
    from recog.tasks import TimitTask

    path = tmp_path / "short.wav"
    sf.write(path, np.zeros(100, np.float32), 16000, subtype="PCM_16")
    task = TimitTask(61, AudioFeatureOptions())
    utt = Utterance("short", "s", str(path), ("h#",))
    with pytest.raises(DataError) as err:
        build_cache([utt], task.extract, task.feature_key, tmp_path / "f", "x", False)
    _check(err.value, path, None, "shorter than one 25.0 ms analysis frame")


# --------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """A prepared tiny TIMIT corpus with its feature caches, as a typed Config."""
    cfg = timit_tree.tiny_config(tmp_path_factory.mktemp("prepared"))
    pipeline.prepare(cfg)
    return cfg


def _model(cfg: Config, stack: int) -> CTCModel:
    return CTCModel(cfg.features.audio.dim, 62, ModelOptions(hidden=4, layers=1, stack=stack))


def test_label_longer_than_its_frames(prepared: Config) -> None:
    from recog.models.ctc import ctc_min_frames

    vocab = timit_vocabulary(61)
    cache = pipeline.features(prepared, "train")
    task = pipeline.get_task(prepared)
    utts = pipeline.load_split(prepared, "train")
    need = [ctc_min_frames([vocab.index[t] for t in task.targets(u)]) for u in utts]
    # the smallest frame stacking under which some utterances no longer fit, but not all
    pairs = list(zip(cache.lengths.tolist(), need, strict=True))
    stack = next(k for k in range(1, 1000) if 0 < sum(-(-n // k) < m for n, m in pairs)
                 < len(utts))
    with pytest.raises(DataError) as err:
        pipeline.dataset(prepared, "train", vocab, _model(prepared, stack))
    assert "output frames cannot hold its" in err.value.reason
    assert err.value.path.endswith(".WAV") and err.value.reason.startswith("utterance ")
    skipped = Rejections(skip_bad=True)
    ds, utts = pipeline.dataset(prepared, "train", vocab, _model(prepared, stack), skipped)
    assert len(skipped) >= 1 and len(ds) == len(cache) - len(skipped) == len(utts)
    assert {Path(e.path).name for e in skipped.items} <= {Path(u.source).name for u in
                                                          pipeline.load_split(prepared, "train")}


def test_utterance_longer_than_a_batch(prepared: Config) -> None:
    vocab = timit_vocabulary(61)
    cache = pipeline.features(prepared, "train")
    longest = int(np.argmax(cache.lengths))
    budget = int(cache.lengths[longest]) - 1
    with pytest.raises(DataError) as err:
        pipeline.dataset(prepared, "train", vocab, max_frames=budget)
    utt = pipeline.load_split(prepared, "train")[longest]
    _check(err.value, Path(utt.source), None,
           f"utterance {utt.id} has {int(cache.lengths[longest])} feature frames, more than "
           f"a whole batch may hold ({budget})")


def test_token_outside_the_vocabulary(prepared: Config) -> None:
    vocab = timit_vocabulary(61)
    small = type(vocab).from_symbols([t for t in vocab.tokens[1:] if t != "aa"])
    with pytest.raises(DataError) as err:
        pipeline.dataset(prepared, "dev", small)
    jsonl = Path(prepared.prepare.out) / "dev.jsonl"
    assert err.value.path == str(jsonl) and err.value.line is not None
    assert "token(s) ['aa'] not in the model's vocabulary" in err.value.reason


def test_features_built_with_skip_bad_still_stop_a_strict_run(tmp_path: Path,
                                                              prepared: Config) -> None:
    """A cache that lists a bad item serves skip_bad runs; a strict run still stops on it."""
    import copy

    cfg = copy.deepcopy(prepared)
    cfg.data.cache_dir = str(tmp_path / "features")
    utts = pipeline.load_split(cfg, "dev")
    bad = Path(utts[1].source)
    data = bad.read_bytes()
    try:
        bad.write_bytes(data[:1100])  # a header and 38 samples: shorter than one frame
        cfg.data.skip_bad = True
        assert list(pipeline.features(cfg, "dev").bad) == [1]
        cfg.data.skip_bad = False
        with pytest.raises(DataError) as err:
            pipeline.features(cfg, "dev")
        assert err.value.path == str(bad)
    finally:
        bad.write_bytes(data)


# --------------------------------------------------------------------------- decoding
def test_decoder_rejects_malformed_input() -> None:
    lp = torch.zeros(2, 5, 4).log_softmax(-1)
    with pytest.raises(ValueError, match="one length per utterance"):
        greedy_decode(lp, torch.tensor([5]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 5\]"):
        greedy_decode(lp, torch.tensor([5, 6]))
    with pytest.raises(ValueError, match=r"\(batch, frames, tokens\)"):
        greedy_decode(lp[0], torch.tensor([5]))
    assert greedy_decode(lp, torch.tensor([5, 0])) == [[], []]


def test_decoding_non_finite_model_output(prepared: Config, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """An utterance whose log-probs are NaN (here: finite frames so large that the model's
    normalisation overflows) is an error naming its file, or with skip_bad left out of the
    scores and listed."""
    import copy

    from recog.tasks import TimitTask

    cfg = copy.deepcopy(prepared)
    cfg.exp_dir, cfg.data.cache_dir = str(tmp_path / "exp"), str(tmp_path / "features")
    cfg.decode.splits = ["dev"]
    vocab = timit_vocabulary(61)
    dev = pipeline.features(cfg, "dev")
    model = CTCModel(dev.dim, len(vocab), cfg.model)
    model.set_normalization(torch.zeros(dev.dim), torch.full((dev.dim,), 1e-3))
    save_checkpoint(Path(cfg.exp_dir) / "best.pt", model, vocab, {}, epoch=0)
    assert pipeline.decode(cfg)["skipped"] == []
    utts = pipeline.load_split(cfg, "dev")
    extract = TimitTask.extract

    def huge_second_utterance(self: TimitTask, utt: Utterance) -> torch.Tensor:
        feats = extract(self, utt)
        return feats.abs() + 3e38 if utt.id == utts[1].id else feats

    monkeypatch.setattr(TimitTask, "extract", huge_second_utterance)
    cfg.data.cache_dir = str(tmp_path / "features-huge")
    with pytest.raises(DataError) as err:
        pipeline.decode(cfg)
    _check(err.value, Path(utts[1].source), None, "the model's output is not finite")
    cfg.data.skip_bad = True
    results = pipeline.decode(cfg)
    assert [s["path"] for s in results["skipped"]] == [utts[1].source]
    assert results["splits"]["dev"]["PER"]["utterances"] == len(utts) - 1
    report = (Path(cfg.exp_dir) / "results" / "report.md").read_text()
    assert "Skipped items: 1" in report and utts[1].source in report
    # items the reader rejected under skip_bad are listed too, from prepare's summary
    cfg.prepare.out = str(tmp_path / "prep")
    (tmp_path / "prep").mkdir()
    (tmp_path / "prep" / "summary.json").write_text(
        '{"rejected": [{"path": "/c/X.PHN", "line": 3, "reason": "unknown phone"}]}')
    report = pipeline.report(cfg, results, Path(cfg.exp_dir))
    assert "rejected by `recog-prepare`: 1\n- `/c/X.PHN`:3: unknown phone" in report


def test_unreadable_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    path.write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(DataError) as err:
        load_checkpoint(path)
    _check(err.value, path, None, "not a readable checkpoint")
    with pytest.raises(DataError) as err:
        load_checkpoint(tmp_path / "absent.pt")
    _check(err.value, tmp_path / "absent.pt", None, "no such checkpoint file (recog-train or "
           "recog-finetune, a recipe's stage 3, writes best.pt)")


def test_absent_word_list_says_what_writes_it(tmp_path: Path) -> None:
    """decode=isolated_word before recog-lm ran: the error said "[Errno 2] No such file";
    it now says which verb (and recipe stage) writes the default word list."""
    from recog.decode.lexicon import read_word_list

    with pytest.raises(DataError) as err:
        read_word_list(tmp_path / "lm/words.txt")
    _check(err.value, tmp_path / "lm/words.txt", None, "no such word list (recog-lm, a "
           "recipe's stage 6, writes lm/words.txt")


# --------------------------------------------------------------------------- input limits
@pytest.fixture
def limits() -> object:
    """recog.data.limits, put back to its defaults afterwards."""
    from recog.data import limits as module

    yield module
    module.set_limits()


@pytest.mark.parametrize("rate", [3_999, 192_001, 1_000_003])
def test_sample_rate_outside_the_range_is_refused(tmp_path: Path, rate: int) -> None:
    from recog.data.audio import audio_info, read_audio

    wav = tmp_path / "odd.wav"
    sf.write(wav, np.zeros(rate // 100, np.float32), rate, subtype="PCM_16")
    for read in (audio_info, read_audio):
        with pytest.raises(DataError) as err:
            read(wav)
        _check(err.value, wav, None, f"sample rate {rate} Hz is outside the supported "
               "4000-192000 Hz")


def test_resampling_an_awkward_rate_keeps_the_pitch() -> None:
    """22,051 Hz (coprime to 16 kHz) is resampled from 22,050 Hz: a 1 kHz tone comes out at
    1 kHz within 0.01 % (FFT peak, an independent measure), and every rate in the range maps
    to one within 0.63 % whose reduced ratio to 16 kHz has at most 3840 x 320 filter phases
    (22,051 Hz as given would need 22,051 x 16,000)."""
    import math

    from recog.data.audio import resampler_rate
    from recog.features.audio import AudioFeatureOptions

    assert resampler_rate(22_051, 16_000) == 22_050
    assert resampler_rate(44_100, 16_000) == 44_100 and resampler_rate(8_000, 16_000) == 8_000
    for rate in range(4_000, 192_001, 7):
        used = resampler_rate(rate, 16_000)
        g = math.gcd(used, 16_000)
        assert (used // g) * (16_000 // g) <= 3840 * 320 and abs(used - rate) <= 0.0063 * rate
    import torchaudio.functional as F

    rate = 22_051
    tone = torch.sin(2 * math.pi * 1000.0 * torch.arange(rate * 2) / rate)
    out = F.resample(tone, resampler_rate(rate, 16_000), 16_000)
    spectrum = np.abs(np.fft.rfft(out.numpy() * np.hanning(len(out)), n=16_000 * 50))
    peak = np.argmax(spectrum) / 50  # Hz, 0.02 Hz bins
    assert abs(peak - 1000.0 * 22_050 / 22_051) < 0.05 and abs(peak - 1000.0) < 0.1
    assert AudioFeatureOptions().sample_rate == 16_000


def test_audio_longer_than_max_seconds_is_refused(tmp_path: Path, limits: object) -> None:
    from recog.data.audio import audio_info, read_audio

    wav = tmp_path / "long.wav"
    sf.write(wav, np.zeros(16_000 * 3, np.float32), 16_000, subtype="PCM_16")
    audio_info(wav)  # 3 s: within the default
    limits.set_limits(max_seconds=2.0)  # type: ignore[attr-defined]
    for read in (audio_info, read_audio):
        with pytest.raises(DataError) as err:
            read(wav)
        _check(err.value, wav, None, "3.0 s of audio: longer than data.max_seconds=2")
    assert read_audio(wav, offset=0.5, duration=1.5)[0].shape == (24_000,)  # a segment fits


def test_ink_with_too_many_points_is_refused(tmp_path: Path, limits: object) -> None:
    import json

    from recog.data.manifest import read_strokes

    path = tmp_path / "line.json"
    path.write_text(json.dumps({"strokes": [[[i, 0] for i in range(60)]] * 2}))
    assert sum(len(s) for s in read_strokes(path)) == 120
    limits.set_limits(max_points=100)  # type: ignore[attr-defined]
    with pytest.raises(DataError) as err:
        read_strokes(path)
    _check(err.value, path, None, "120 pen points: more than data.max_points=100")


def test_deeply_nested_stroke_json_is_refused(tmp_path: Path) -> None:
    from recog.data.manifest import read_strokes

    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError) as err:
        read_strokes(path)
    _check(err.value, path, None, "nested too deeply")


@pytest.mark.parametrize("uid", ["a b", "a\tb", "a\nb", "a\u00a0b"],
                         ids=["space", "tab", "newline", "no-break space"])
def test_utterance_id_with_whitespace_is_refused(tmp_path: Path, uid: str) -> None:
    import json

    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"id": "ok", "source": "x.wav", "tokens": ["a"]}) + "\n"
                    + json.dumps({"id": uid, "source": "x.wav", "tokens": ["a"]}) + "\n")
    with pytest.raises(DataError) as err:
        read_jsonl(path)
    _check(err.value, path, 2, "holds whitespace")


@pytest.mark.parametrize("tokens, words", [([], "'tokens' is empty"), ("", "'tokens' is empty"),
                                           (["a", ""], "non-empty strings")],
                         ids=["empty list", "empty string", "empty token"])
def test_prepared_utterance_without_tokens_is_refused(tmp_path: Path, tokens: object,
                                                      words: str) -> None:
    import json

    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"id": "u1", "source": "x.wav", "tokens": tokens}) + "\n")
    with pytest.raises(DataError) as err:
        read_jsonl(path)
    _check(err.value, path, 1, words)


def test_manifest_id_with_whitespace_empty_text_and_nesting(tmp_path: Path) -> None:
    import json

    from recog.data.manifest import Tokenizer, read_manifest

    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(8000, np.float32), 16_000, subtype="PCM_16")
    path = tmp_path / "m.jsonl"
    for line, words in ((json.dumps({"id": "a b", "source": "a.wav", "text": "aa"}),
                         "holds whitespace"),
                        (json.dumps({"id": "a", "source": "a.wav", "text": " "}),
                         "empty transcription"),
                        (json.dumps({"id": "a", "source": "a.wav", "tokens": ["aa", ""]}),
                         "a list of non-empty strings"),
                        ("[" * 100_000 + "]" * 100_000, "nested too deeply")):
        path.write_text(line + "\n")
        with pytest.raises(DataError) as err:
            read_manifest(path, Tokenizer("phones"))
        _check(err.value, path, 1, words)


def test_symlink_loops_in_a_manifest_and_wav_scp(tmp_path: Path) -> None:
    import json

    from recog.data.manifest import Tokenizer, read_kaldi_dir, read_manifest

    (tmp_path / "loop_a.wav").symlink_to(tmp_path / "loop_b.wav")
    (tmp_path / "loop_b.wav").symlink_to(tmp_path / "loop_a.wav")
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"id": "a", "source": "loop_a.wav", "text": "aa"}) + "\n")
    with pytest.raises(DataError) as err:
        read_manifest(path, Tokenizer("phones"))
    _check(err.value, path, 1, "a symbolic link loop?")
    kaldi = tmp_path / "kaldi"
    kaldi.mkdir()
    (kaldi / "wav.scp").write_text(f"a {tmp_path / 'loop_a.wav'}\n")
    (kaldi / "text").write_text("a aa\n")
    (kaldi / "utt2spk").write_text("a s\n")
    with pytest.raises(DataError) as err:
        read_kaldi_dir(kaldi, Tokenizer("phones"))
    _check(err.value, kaldi / "wav.scp", 1, "a symbolic link loop?")
