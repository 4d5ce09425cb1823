"""The InkML reader: the W3C example file, channel order, namespaces, delta encoding, truth
annotations, bad files as FILE:LINE errors; InkML as a manifest source and for transcribe."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from recog.data.iamondb import read_line_strokes
from recog.data.inkml import read_inkml
from recog.data.manifest import Tokenizer, read_manifest, read_strokes
from recog.data.utterance import DataError

FIXTURES = Path(__file__).parent / "fixtures" / "inkml"
HELLO = FIXTURES / "w3c_hello.inkml"
NS = "http://www.w3.org/2003/InkML"


def _hello_points() -> list[np.ndarray]:
    """The fixture's traces parsed independently of the reader (ElementTree, plain split)."""
    root = ET.parse(HELLO).getroot()
    return [np.array([[float(v) for v in p.split()] for p in t.text.split(",")])
            for t in root.iter(f"{{{NS}}}trace")]


def test_the_w3c_hello_example() -> None:
    ink = read_inkml(HELLO)
    # counted by hand in the Recommendation's example: h, e, l, l, o
    assert [len(s) for s in ink.strokes] == [27, 20, 12, 13, 16]
    assert ink.strokes[0][0, :2].tolist() == [10, 0]
    assert ink.strokes[0][-1, :2].tolist() == [93, 205]
    assert ink.strokes[4][-1, :2].tolist() == [365, 150]
    for got, ref in zip(ink.strokes, _hello_points(), strict=True):
        assert np.array_equal(got[:, :2], ref)
    # no T channel: 10 ms per point and a 10 ms pen lift between traces
    t = np.concatenate([s[:, 2] for s in ink.strokes])
    assert ink.strokes[1][0, 2] == pytest.approx(0.28) and np.all(np.diff(t) > 0)
    assert ink.truth is None and ink.writer is None


def _encode(values: np.ndarray, order: int) -> str:
    """Trace text with the first point explicit, the second as first differences and the
    rest as differences of the given order (written here, independently of the reader)."""
    parts = [" ".join(f"{v:g}" for v in values[0])]
    for k in range(1, len(values)):
        if order == 1 or k == 1:
            d, q = values[k] - values[k - 1], "'"
        else:
            d, q = values[k] - 2 * values[k - 1] + values[k - 2], '"'
        parts.append("".join(f"{q}{v:g}" for v in d))  # no spaces: prefixes separate
    return ",\n  ".join(parts)


@pytest.mark.parametrize("order", [1, 2])
def test_delta_encoding_channel_order_and_prefix(tmp_path: Path, order: int) -> None:
    ref = _hello_points()
    traces = []
    for k, xy in enumerate(ref):
        t = 1000 + 8 * np.arange(len(xy)) + 300 * k  # milliseconds
        text = _encode(np.column_stack([t, xy[:, 1], xy[:, 0]]), order)
        traces.append(f'<inkml:trace contextRef="#c">{text}</inkml:trace>')
    path = tmp_path / "delta.inkml"
    path.write_text(
        f'<?xml version="1.0"?>\n<inkml:ink xmlns:inkml="{NS}" xmlns:msink="urn:x">\n'
        '<inkml:definitions><inkml:context xml:id="c"><inkml:inkSource xml:id="s">'
        '<inkml:traceFormat><inkml:channel name="T" type="integer" units="ms"/>'
        '<inkml:channel name="Y" type="integer"/><inkml:channel name="X" type="integer"/>'
        '</inkml:traceFormat></inkml:inkSource></inkml:context></inkml:definitions>\n'
        '<msink:context rotatedBoundingBox="1 2"/>\n'
        '<inkml:traceGroup><inkml:annotation type="truth">hello</inkml:annotation>\n'
        + "\n".join(traces) + "\n</inkml:traceGroup></inkml:ink>\n")
    ink = read_inkml(path)
    assert ink.truth == "hello"
    for k, (got, xy) in enumerate(zip(ink.strokes, ref, strict=True)):
        assert np.allclose(got[:, :2], xy)
        assert np.allclose(got[:, 2], (1000 + 8 * np.arange(len(xy)) + 300 * k) / 1000)


def test_prefixes_persist_and_values_need_no_spaces(tmp_path: Path) -> None:
    # The pair trace of the W3C InkML overview talk (2004): 1125 18432'23'43"7"-8 3-5 is
    # (1125, 18432), then first differences (23, 43), then second differences (7, -8) and,
    # the prefix still in force, (3, -5). By hand: x 1125, 1148, 1178, 1211; y 18432,
    # 18475, 18510, 18540.
    path = tmp_path / "talk.inkml"
    path.write_text(f'<ink xmlns="{NS}"><trace>1125 18432,\'23\'43,"7"-8, 3-5</trace>'
                    "<trace>!5 6, 7 8</trace></ink>")
    a, b = read_inkml(path).strokes
    assert a[:, :2].tolist() == [[1125, 18432], [1148, 18475], [1178, 18510], [1211, 18540]]
    assert b[:, :2].tolist() == [[5, 6], [7, 8]]


def test_contexts_pen_up_traces_and_word_truths(tmp_path: Path) -> None:
    path = tmp_path / "words.inkml"
    path.write_text(
        f'<ink xmlns="{NS}">\n<definitions>\n'
        '  <traceFormat xml:id="yx"><channel name="Y"/><channel name="X"/></traceFormat>\n'
        '  <context xml:id="ctx2" traceFormatRef="#yx"/>\n'
        '  <traceFormat xml:id="xyf"><channel name="X"/><channel name="Y"/>'
        '<channel name="F"/><intermittentChannels><channel name="S"/></intermittentChannels>'
        '</traceFormat>\n  <context xml:id="ctx3" traceFormatRef="#xyf"/>\n</definitions>\n'
        '<annotation type="writer">w042</annotation>\n'
        '<traceGroup><annotation type="truth">to</annotation>'
        '<trace contextRef="#ctx2">1 2, 3 4</trace>'
        '<trace contextRef="#ctx3" type="penUp">9 9 0, 9 9 0</trace></traceGroup>\n'
        '<traceGroup><annotation type="truth">be</annotation>'
        '<traceGroup><annotation type="truth">b</annotation>'
        '<trace contextRef="#ctx3">5 6 100, 7 8 90 1</trace></traceGroup></traceGroup>\n'
        "</ink>\n")
    ink = read_inkml(path)
    assert [s[:, :2].tolist() for s in ink.strokes] == [[[2, 1], [4, 3]], [[5, 6], [7, 8]]]
    assert ink.truth == "to be" and ink.writer == "w042"


@pytest.mark.parametrize(("body", "line", "reason"), [
    ("<trace>1 2, 3 4</trace>\n<trace>1 2 & 3</trace>", 3, "malformed XML"),
    ("<annotation type='truth'>x</annotation>", 1, "no pen-down <trace>"),
    ("<trace>1 2, 3 4</trace>\n<trace>1 2,\n 3 abc</trace>", 4, "point 2: 'abc' is not a number"),
    ("<trace>\n1 2,\n3</trace>", 4, "point 2 has 1 value(s); the trace format has 2"),
    ("<trace>1 2 3, 4 5 6</trace>", 2, "point 1 has 3 values"),
    ("<trace>'1 2, 3 4</trace>", 2, "first point of a trace must be explicit"),
    ('<trace>1 2, "1 1, 2 2</trace>', 2, "second difference needs two earlier points"),
    ("<trace>1 2, ? 4</trace>", 2, "wildcard"),
    ("<trace>1 2,, 3 4</trace>", 2, "point 2 is empty"),
    ('<traceFormat><channel name="X"/><channel name="T" units="h"/></traceFormat>', 2,
     "X and Y are needed"),
    ('<traceFormat><channel name="X"/><channel name="Y"/><channel name="T" units="h"/>'
     "</traceFormat>", 2, "unknown units"),
    ('<trace contextRef="#nope">1 2, 3 4</trace>', 2, "context '#nope' is not defined"),
])
def test_bad_inkml_names_file_and_line(tmp_path: Path, body: str, line: int,
                                       reason: str) -> None:
    path = tmp_path / "bad.inkml"
    path.write_text(f'<ink xmlns="{NS}">\n{body}\n</ink>\n')
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}:{line}: .*{re.escape(reason)}"):
        read_inkml(path)


def test_not_inkml(tmp_path: Path) -> None:
    path = tmp_path / "x.inkml"
    path.write_text("<WhiteboardCaptureSession/>")
    with pytest.raises(DataError, match=r"x.inkml:1: not InkML"):
        read_inkml(path)
    with pytest.raises(DataError, match="InkML file is missing"):
        read_inkml(tmp_path / "gone.inkml")


def write_inkml(path: Path, strokes: list[np.ndarray], truth: str | None = None) -> Path:
    """Strokes (x, y, seconds) as InkML with X Y T channels (T in ms), first differences."""
    groups = "".join(
        "<trace>" + _encode(np.column_stack([s[:, :2], np.rint(s[:, 2] * 1000)]), 1)
        + "</trace>\n" for s in strokes)
    note = f'<annotation type="truth">{truth}</annotation>\n' if truth else ""
    path.write_text(f'<ink xmlns="{NS}">\n<traceFormat><channel name="X"/><channel name="Y"/>'
                    f'<channel name="T" units="ms"/></traceFormat>\n{note}{groups}</ink>\n')
    return path


def write_inkml_manifest(corpus: Path, texts: dict[str, list[str]], writers: int = 1) -> None:
    """One InkML line file per text (the stroke-font line of ``tests.iamondb_tree``, its truth
    annotated) and ``<split>.jsonl`` naming them, ``corpus`` created; writers w0.. in turn."""
    from tests.iamondb_tree import stroke_xml

    corpus.mkdir(parents=True, exist_ok=True)
    xml = corpus / "line.xml"
    for split, lines in texts.items():
        rows = []
        for k, text in enumerate(lines):
            xml.write_text(stroke_xml(text))
            write_inkml(corpus / f"{split}{k}.inkml", read_line_strokes(xml), truth=text)
            rows.append(json.dumps({"id": f"{split}{k}", "source": f"{split}{k}.inkml",
                                    "writer": f"w{k % writers}"}))
        (corpus / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    xml.unlink()


def test_inkml_reads_like_the_iamondb_xml_it_was_written_from(tmp_path: Path) -> None:
    from tests.iamondb_tree import stroke_xml

    xml = tmp_path / "l.xml"
    xml.write_text(stroke_xml("ab ba"))
    strokes = read_line_strokes(xml)
    again = read_strokes(write_inkml(tmp_path / "l.inkml", strokes))
    assert all(np.allclose(a, b) for a, b in zip(strokes, again, strict=True))


def test_manifest_takes_the_text_from_the_truth_annotation(tmp_path: Path) -> None:
    write_inkml(tmp_path / "a.inkml", _hello_with_time(), truth="hello")
    write_inkml(tmp_path / "b.inkml", _hello_with_time())
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "source": "a.inkml"}) + "\n"
                        + json.dumps({"id": "b", "source": "b.inkml", "text": "hi"}) + "\n")
    utts = read_manifest(manifest, Tokenizer("chars"), "ink")
    assert [(u.id, u.text, "".join(u.tokens)) for u in utts] == [("a", "hello", "hello"),
                                                                 ("b", "hi", "hi")]
    manifest.write_text(json.dumps({"id": "b", "source": "b.inkml"}) + "\n")
    with pytest.raises(DataError, match=r"m.jsonl:1: .*b.inkml: no text or tokens"):
        read_manifest(manifest, Tokenizer("chars"), "ink")


def _hello_with_time() -> list[np.ndarray]:
    pts = _hello_points()
    return [np.column_stack([p, 0.5 * k + 0.01 * np.arange(len(p))]) for k, p in enumerate(pts)]


def test_inkml_manifest_through_prepare_train_and_transcribe(tmp_path: Path) -> None:
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    corpus = tmp_path / "corpus"
    write_inkml_manifest(corpus, {"train": ["ab", "ba b", "abba", "b a", "bab"],
                                  "dev": ["ab b"], "test": ["ba"]})
    args = ["corpus=manifest", f"corpus.root={corpus}", "corpus.modality=ink",
            "corpus.tokens=chars", "features=pen", f"prepare.out={tmp_path / 'prep'}",
            f"exp_dir={tmp_path / 'exp'}", "model.hidden=16", "model.layers=1",
            "model.stack=1", "trainer.epochs=1", "trainer.progress=false",
            "features.pen.resample_step=0.25"]
    for verb in ("recog-prepare", "recog-train"):
        run = subprocess.run([str(bin_dir / verb), *args], cwd=tmp_path, capture_output=True,
                             text=True)
        assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads((tmp_path / "prep/summary.json").read_text())
    assert {k: v["utterances"] for k, v in summary["splits"].items()} == {
        "train": 5, "dev": 1, "test": 1}
    first = json.loads((tmp_path / "prep/train.jsonl").read_text().splitlines()[0])
    assert first["text"] == "ab" and first["source"].endswith("train0.inkml")
    run = subprocess.run([str(bin_dir / "recog-transcribe"), str(tmp_path / "exp/best.pt"),
                          str(corpus / "test0.inkml"), str(HELLO), "--json"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert [r["file"] for r in out] == [str(corpus / "test0.inkml"), str(HELLO)]
    assert all(set(r["text"]) <= set("ab ") for r in out)  # the model's own characters
