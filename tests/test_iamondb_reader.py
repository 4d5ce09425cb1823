from pathlib import Path

import numpy as np
import pytest

from recog.data.iamondb import read_iamondb, read_line_strokes
from recog.data.utterance import DataError
from tests.iamondb_tree import make_tree


@pytest.mark.parametrize("archives", [False, True])
def test_reads_splits_lines_and_text(tmp_path: Path, archives: bool) -> None:
    make_tree(tmp_path, archives=archives)
    corpus = read_iamondb(tmp_path, unpack_dir=tmp_path / "unpacked")
    ids = {k: [u.id for u in v] for k, v in corpus.splits.items()}
    assert ids == {
        "train": ["a01-000u-01", "a01-000u-02", "a01-000u-03", "a01-001z-01", "a01-001z-02"],
        "val1": ["b02-010x-01", "b02-010x-02"],
        # a form id without the copy letter expands to every copy
        "val2": ["c03-020u-01", "c03-020x-01"],
        "test": ["d04-030u-01", "d04-030u-02"],
    }
    u = corpus.splits["train"][2]
    assert u.text == 'ba "ab"' and u.tokens == tuple('ba "ab"')  # entity decoded
    assert u.speaker == "a01-000u" and u.extra["writer"] == "a01-000u"
    assert corpus.splits["train"][4].text == "ab#"
    assert u.source.endswith("lineStrokes/a01/a01-000/a01-000u-03.xml")
    assert corpus.rejected == []


def test_strokes_and_times(tmp_path: Path) -> None:
    base = make_tree(tmp_path)
    strokes = read_line_strokes(base / "lineStrokes/a01/a01-000/a01-000u-01.xml")
    assert len(strokes) == 4  # "ab ba": four characters, one stroke each
    assert all(s.shape == (6, 3) for s in strokes)
    times = np.concatenate([s[:, 2] for s in strokes])
    assert np.all(np.diff(times) > 0)
    assert strokes[0][0].tolist() == [1000.0, 1000.0, 100.0]


def test_line_without_transcription_is_listed_not_an_error(tmp_path: Path) -> None:
    base = make_tree(tmp_path)
    extra = base / "lineStrokes/a01/a01-000/a01-000u-04.xml"
    extra.write_text((base / "lineStrokes/a01/a01-000/a01-000u-01.xml").read_text())
    (base / "lineStrokes/a01/a01-001/a01-001z-02.xml").unlink()
    corpus = read_iamondb(tmp_path)
    reasons = sorted((Path(e.path).name, e.reason.split(" (")[0]) for e in corpus.rejected)
    assert reasons == [("a01-000u-04.xml", "line file has no transcription"),
                       ("a01-001z.txt", "transcription line 2 has no line file")]
    assert len(corpus.splits["train"]) == 4


def test_malformed_xml_names_file_and_line(tmp_path: Path) -> None:
    base = make_tree(tmp_path)
    path = base / "lineStrokes/b02/b02-010/b02-010x-01.xml"
    lines = path.read_text().splitlines()
    lines[8] = lines[8].replace("/>", ">")
    path.write_text("\n".join(lines))
    with pytest.raises(DataError) as err:
        read_iamondb(tmp_path)
    assert err.value.path == str(path) and "malformed XML" in err.value.reason
    assert err.value.line is not None and err.value.line >= 9
    corpus = read_iamondb(tmp_path, skip_bad=True)
    assert [e.path for e in corpus.rejected] == [str(path)]
    assert [u.id for u in corpus.splits["val1"]] == ["b02-010x-02"]


def test_stroke_without_points(tmp_path: Path) -> None:
    base = make_tree(tmp_path)
    path = base / "lineStrokes/d04/d04-030/d04-030u-02.xml"
    text = path.read_text()
    start = text.index("<Stroke ")
    end = text.index("</Stroke>") + len("</Stroke>")
    line = text[:start].count("\n") + 1
    path.write_text(text[:start] + '<Stroke colour="black"></Stroke>' + text[end:])
    with pytest.raises(DataError, match="Stroke has no points") as err:
        read_iamondb(tmp_path)
    assert (err.value.path, err.value.line) == (str(path), line)


def test_no_tree(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no IAM-OnDB found"):
        read_iamondb(tmp_path)


@pytest.mark.parametrize("archives", [False, True])
def test_writer_ids_from_the_original_xml(tmp_path: Path, archives: bool) -> None:
    import tarfile

    base = make_tree(tmp_path, archives=archives)
    original = tmp_path / "staging" if archives else base
    for form, writer in (("a01-000u", "10058"), ("a01-001z", "10058"), ("d04-030u", "672")):
        folder = original / "original" / form[:3] / form[:7]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"strokes{form[7]}.xml").write_text(
            '<?xml version="1.0" encoding="ISO-8859-1"?>\n<WhiteboardCaptureSession>\n'
            f'  <General>\n    <Form id="{form[:7]}" writerID="{writer}"/>\n  </General>\n'
            "</WhiteboardCaptureSession>\n")
    if archives:
        with tarfile.open(base / "original-xml-all.tar.gz", "w:gz") as tar:
            tar.add(original / "original", arcname="original")
    corpus = read_iamondb(tmp_path, unpack_dir=tmp_path / "unpacked")
    writers = {u.id: u.speaker for s in corpus.splits.values() for u in s}
    assert writers["a01-000u-01"] == writers["a01-001z-02"] == "10058"  # two forms, one writer
    assert writers["d04-030u-02"] == "672"
    assert writers["b02-010x-01"] == "b02-010x"  # no original file: the form id
