"""The synthetic IAM-OnDB generator: layout, XML and ascii formats, splits, text, ink, seeds."""

from __future__ import annotations

import re
import string
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from recog.data.synth import InkSynthOptions, generate_iamondb
from recog.data.synth.iamondb import (
    CHARSET,
    FACE_SLANT,
    PUNCTUATION,
    SPLIT_FILES,
    _plan,
    _render_line,
    _sensor,
    _Style,
    check_faces,
    check_vocabulary,
    make_text_lines,
)

TINY = InkSynthOptions(
    seed=3,
    n_train_writers=3,
    n_val1_writers=1,
    n_val2_writers=1,
    n_test_writers=2,
    forms_per_writer=2,
    eval_forms_per_writer=1,
    lines_per_form=(2, 3),
)
FORM_ID = r"[a-z][0-9]{2}-[0-9]{3}[a-z]"
TIME = r"[0-9]+\.[0-9]{2}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_iamondb(tmp_path_factory.mktemp("ink"), TINY, progress=False)


def _tree_bytes(corpus: Path) -> dict[str, bytes]:
    return {str(p.relative_to(corpus)): p.read_bytes() for p in corpus.rglob("*") if p.is_file()}


def _split_ids(corpus: Path) -> dict[str, list[str]]:
    return {s: (corpus / f).read_text().split() for s, f in SPLIT_FILES.items()}


def _csr_lines(corpus: Path, form_id: str) -> list[str]:
    path = corpus / "ascii" / form_id[:3] / form_id[:7] / f"{form_id}.txt"
    return path.read_bytes().decode("iso-8859-1").split("\n")


def _line_files(corpus: Path, form_id: str) -> list[Path]:
    return sorted((corpus / "lineStrokes" / form_id[:3] / form_id[:7]).glob(f"{form_id}-*.xml"))


def test_tree_layout_and_names(corpus: Path) -> None:
    assert corpus.name == "IAM-OnDB"
    assert sorted(p.name for p in corpus.parent.iterdir()) == ["IAM-OnDB"]  # no staging left
    expected = {"ascii", "lineStrokes", "trainset.txt", "testset_v.txt", "testset_t.txt"}
    assert {p.name for p in corpus.iterdir()} == expected | {"testset_f.txt"}
    xml_files = sorted((corpus / "lineStrokes").rglob("*"))
    for path in (p for p in xml_files if p.is_file()):
        rel = path.relative_to(corpus / "lineStrokes")
        assert re.fullmatch(rf"{FORM_ID}-[0-9]{{2}}\.xml", rel.name), rel
        assert rel.parts[0] == rel.name[:3] and rel.parts[1] == rel.name[:7], rel
    for path in (p for p in (corpus / "ascii").rglob("*") if p.is_file()):
        rel = path.relative_to(corpus / "ascii")
        assert re.fullmatch(rf"{FORM_ID}\.txt", rel.name), rel
        assert rel.parts == (rel.name[:3], rel.name[:7], rel.name)
    forms = [i for ids in _split_ids(corpus).values() for i in ids]
    assert len(forms) == 3 * 2 + 4 * 1
    for form_id in forms:
        numbers = [int(p.stem[-2:]) for p in _line_files(corpus, form_id)]
        assert numbers == list(range(1, len(numbers) + 1)) and 2 <= len(numbers) <= 3


def test_xml_has_the_whiteboard_structure_and_increasing_times(corpus: Path) -> None:
    paths = sorted((corpus / "lineStrokes").rglob("*.xml"))
    assert paths
    for path in paths:
        raw = path.read_bytes()
        assert raw.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<Whiteboard')
        assert re.search(rb'start_time="[0-9]+\.[0-9]{2}" end_time="[0-9]+\.[0-9]{2}"', raw)
        root = ET.fromstring(raw)
        assert root.tag == "WhiteboardCaptureSession"
        assert [c.tag for c in root] == ["WhiteboardDescription", "StrokeSet"]
        desc = root.find("WhiteboardDescription")
        assert [c.tag for c in desc] == [
            "SensorLocation", "DiagonallyOppositeCoords", "VerticallyOppositeCoords",
            "HorizontallyOppositeCoords",
        ]  # fmt: skip
        assert desc.find("SensorLocation").attrib == {"corner": "top_left"}
        diag, vert, horiz = ({k: int(v) for k, v in desc[i].attrib.items()} for i in (1, 2, 3))
        assert vert["y"] == diag["y"] and horiz["x"] == diag["x"]
        left, top, right, bottom = vert["x"], horiz["y"], diag["x"], diag["y"]
        assert 0 <= left < right and 0 <= top < bottom

        strokes = list(root.find("StrokeSet"))
        assert strokes and all(s.tag == "Stroke" for s in strokes)
        times: list[float] = []
        for stroke in strokes:
            assert set(stroke.attrib) == {"colour", "start_time", "end_time"}
            assert stroke.attrib["colour"] == "black"
            points = list(stroke)
            assert points and all(p.tag == "Point" for p in points)
            for p in points:
                assert set(p.attrib) == {"x", "y", "time"}
                assert re.fullmatch(r"[0-9]+", p.attrib["x"]) and re.fullmatch(
                    r"[0-9]+", p.attrib["y"]
                )
                assert re.fullmatch(TIME, p.attrib["time"])
                assert left <= int(p.attrib["x"]) <= right and top <= int(p.attrib["y"]) <= bottom
            assert stroke.attrib["start_time"] == points[0].attrib["time"]
            assert stroke.attrib["end_time"] == points[-1].attrib["time"]
            times += [float(p.attrib["time"]) for p in points]
        assert all(b > a for a, b in zip(times, times[1:], strict=False)), path


def test_times_increase_across_the_lines_of_a_form(corpus: Path) -> None:
    for form_id in _split_ids(corpus)["train"]:
        spans = []
        for path in _line_files(corpus, form_id):
            times = [float(t) for t in re.findall(rb'time="([0-9.]+)"', path.read_bytes())]
            spans.append((times[0], times[-1]))
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_ascii_files_have_ocr_and_csr_sections_matching_the_line_files(corpus: Path) -> None:
    for ids in _split_ids(corpus).values():
        for form_id in ids:
            lines = _csr_lines(corpus, form_id)
            assert lines[:2] == ["OCR:", ""]
            csr = lines.index("CSR:")
            ocr_text = lines[2 : csr - 1]
            assert lines[csr - 1] == "" and lines[csr + 1] == "" and lines[-1] == ""
            csr_text = lines[csr + 2 : -1]
            assert csr_text == ocr_text
            assert len(csr_text) == len(_line_files(corpus, form_id))
            for text in csr_text:
                assert text and text == text.strip() and "  " not in text
                assert len(text) <= TINY.chars_per_line[1]
                assert set(text) <= set(CHARSET)


def test_splits_are_disjoint_in_forms_and_writers_and_list_existing_forms(corpus: Path) -> None:
    ids = _split_ids(corpus)
    listed = [i for v in ids.values() for i in v]
    assert len(listed) == len(set(listed))
    on_disk = {p.stem for p in (corpus / "ascii").rglob("*.txt")}
    assert set(listed) == on_disk
    for form_id in listed:
        assert re.fullmatch(FORM_ID, form_id)
        assert _line_files(corpus, form_id)
    assert len(ids["train"]) == 3 * 2 and [len(ids[s]) for s in ("val1", "val2")] == [1, 1]
    assert len(ids["test"]) == 2

    plan = _plan(TINY)
    assert {s: sorted(f.form_id for f in plan if f.split == s) for s in SPLIT_FILES} == ids
    writers = {s: {f.writer for f in plan if f.split == s} for s in SPLIT_FILES}
    assert [len(writers[s]) for s in SPLIT_FILES] == [3, 1, 1, 2]
    assert len(set().union(*writers.values())) == 7  # no writer in two splits


def test_same_seed_gives_identical_bytes_and_another_seed_differs(
    corpus: Path, tmp_path: Path
) -> None:
    again = generate_iamondb(tmp_path / "a", TINY, progress=False)
    assert _tree_bytes(again) == _tree_bytes(corpus)
    other = generate_iamondb(tmp_path / "b", InkSynthOptions(**{**vars(TINY), "seed": 4}), False)
    assert _tree_bytes(other) != _tree_bytes(corpus)
    assert (other / "trainset.txt").read_bytes() != (corpus / "trainset.txt").read_bytes()


def test_an_existing_tree_is_returned_untouched(tmp_path: Path) -> None:
    target = tmp_path / "IAM-OnDB"
    target.mkdir()
    (target / "marker").write_text("mine")
    assert generate_iamondb(tmp_path, TINY, progress=False) == target
    assert [p.name for p in target.iterdir()] == ["marker"]


def test_progress_goes_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = InkSynthOptions(**{**vars(TINY), "n_train_writers": 1, "n_test_writers": 0})
    generate_iamondb(tmp_path, small, progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "synth ink forms 4/4" in captured.err  # 1 x 2 + 1 + 1
    assert "\r" not in captured.err  # not a terminal: plain lines (recog.progress)


def test_text_uses_capitals_digits_and_all_punctuation() -> None:
    text = "".join(line for form in _plan(InkSynthOptions()) for line in form.lines)
    used = set(text)
    assert used <= set(CHARSET)
    assert set(string.ascii_uppercase) <= used
    assert set(string.digits) <= used
    assert set(PUNCTUATION) <= used
    lines = [line for form in _plan(InkSynthOptions()) for line in form.lines]
    lengths = np.array([len(line) for line in lines])
    assert lengths.max() <= 45 and np.mean(lengths) > 20
    words = [len(line.split(" ")) for line in lines]
    assert min(words) >= 1 and max(words) <= 7


def test_default_sizes() -> None:
    plan = _plan(InkSynthOptions())
    train = [f for f in plan if f.split == "train"]
    assert sum(len(f.lines) for f in train) >= 3000
    assert len({f.writer for f in train}) >= 40
    assert len({f.form_id for f in plan}) == len(plan)
    assert len({f.lines for f in plan}) == len(plan)  # no text shared between forms


def test_text_lines_respect_the_bounds() -> None:
    rng = np.random.default_rng(0)
    lines = make_text_lines(rng, 200, words_per_line=(2, 4), chars_per_line=(10, 25))
    assert len(lines) == 200
    assert all(len(line) <= 25 and len(line.split(" ")) <= 4 for line in lines)


def test_vocabulary_is_in_cmudict_and_faces_draw_every_character() -> None:
    check_vocabulary()
    check_faces(list(FACE_SLANT))
    with pytest.raises(ValueError, match="unknown Hershey face"):
        check_faces(["nosuchface"])


def _style(face: str, **changes: float) -> _Style:
    base = {
        "cap_height": 150.0, "slant": FACE_SLANT[face], "aspect": 1.0, "letter_spacing": 0.0,
        "word_spacing": 1.0, "line_spacing": 2.0, "tilt": 0.0, "baseline_wave": 0.0,
        "jitter": 0.0, "rounding": 0.02, "pen_speed": 18.0, "curve_slowdown": 0.1,
        "pen_up_s": 0.05, "word_pause_s": 0.1, "delayed_strokes": 0.0,
    }  # fmt: skip
    return _Style(face=face, **{**base, **changes})


@pytest.mark.parametrize("face", ["cursive", "futural"])
def test_ink_has_visible_word_gaps_and_pen_up_time(face: str) -> None:
    def ink(text: str) -> list[tuple[int, np.ndarray]]:
        return _render_line(text, _style(face), np.random.default_rng(1))

    def width(text: str) -> float:
        points = np.concatenate([p for _, p in ink(text)])
        return float(np.ptp(points[:, 0]))

    assert width("ab cd") - width("abcd") > 0.4 * 150.0
    strokes = ink("Quiz, #42 (it's)!")
    for (t0, p0), (t1, _) in zip(strokes, strokes[1:], strict=False):
        assert t1 > t0 + len(p0) - 1  # a pen-up gap of at least one tick
    height = np.ptp(np.concatenate([p for _, p in ink("HIT")])[:, 1])
    assert 0.8 * 150.0 < height < 1.3 * 150.0  # capitals are about cap_height high


def test_pen_samples_are_denser_where_the_pen_is_slow() -> None:
    strokes = _render_line("ooo", _style("futural", curve_slowdown=0.0), np.random.default_rng(2))
    steps = np.concatenate([np.hypot(*np.diff(p, axis=0).T) for _, p in strokes])
    curvy = _render_line("ooo", _style("futural", curve_slowdown=0.3), np.random.default_rng(2))
    slow = np.concatenate([np.hypot(*np.diff(p, axis=0).T) for _, p in curvy])
    assert len(slow) > len(steps)  # slowing down at curvature takes more samples
    assert slow.std() / slow.mean() > 0.1  # and spacing varies along the stroke


def test_delayed_strokes_come_after_the_word() -> None:
    def stroke_tops(delayed: float) -> list[float]:
        strokes = _render_line(
            "minim", _style("cursive", delayed_strokes=delayed), np.random.default_rng(3)
        )
        return [float(p[:, 1].mean()) for _, p in strokes]

    late = stroke_tops(1.0)
    assert late[-1] < -0.4 * 150.0 and late[-2] < -0.4 * 150.0  # the two i-dots, last
    assert stroke_tops(0.0)[-1] > -0.4 * 150.0


def test_a_character_the_set_lacks_raises() -> None:
    with pytest.raises(ValueError, match="cannot draw '@'"):
        _render_line("a@b", _style("futural"), np.random.default_rng(0))


def test_options_accept_lists_and_reject_bad_values() -> None:
    options = InkSynthOptions(cap_height=[120, 130], faces=["cursive"], lines_per_form=[2, 2])
    assert options.cap_height == (120.0, 130.0) and options.faces == ("cursive",)
    assert options.lines_per_form == (2, 2)
    for field, value in [
        ("cap_height", (200.0, 100.0)), ("cap_height", (0.0, 10.0)), ("jitter", (-1.0, 0.1)),
        ("lines_per_form", (2.5, 3)), ("slant", "0.1"), ("aspect", (1.0, 1.1, 1.2)),
        ("delayed_strokes", (0.0, 2.0)), ("faces", ["comic"]), ("n_test_writers", -1),
        ("forms_per_writer", 0), ("word_slant", (-0.1, 0.1)), ("sample_drop", (0.5, 1.0)),
    ]:  # fmt: skip
        with pytest.raises(ValueError, match=field):
            InkSynthOptions(**{field: value})


def test_options_work_as_a_structured_config() -> None:
    config = OmegaConf.merge(
        OmegaConf.structured(InkSynthOptions),
        OmegaConf.from_dotlist(["seed=5", "slant=[0.0,0.2]", "faces=[cursive,futural]"]),
    )
    options = OmegaConf.to_object(config)
    assert isinstance(options, InkSynthOptions)
    assert options.seed == 5 and options.slant == (0.0, 0.2)
    assert options.faces == ("cursive", "futural")


def test_cursive_joins_make_fewer_strokes() -> None:
    def strokes(gap: float) -> list[tuple[int, np.ndarray]]:
        return _render_line("minimum running", _style("cursive", join_gap=gap),
                            np.random.default_rng(4))

    apart, joined = strokes(0.0), strokes(6.0)
    assert len(joined) < len(apart)
    assert len(joined) >= 2  # never across the word gap
    print_face = _render_line("minimum running", _style("futural", join_gap=6.0),
                              np.random.default_rng(4))
    assert len(print_face) == len(_render_line("minimum running", _style("futural"),
                                               np.random.default_rng(4)))  # print: no joins


def test_per_word_and_per_letter_variation_changes_the_shapes() -> None:
    plain = _render_line("hello there", _style("futural"), np.random.default_rng(5))
    varied = _render_line("hello there", _style("futural", word_slant=0.1, word_scale=0.1,
                                                word_drift=0.1, letter_noise=0.05),
                          np.random.default_rng(5))
    assert len(plain) == len(varied)  # the same strokes, drawn differently
    a, b = np.concatenate([p for _, p in plain]), np.concatenate([p for _, p in varied])
    assert a.shape != b.shape or not np.allclose(a, b, atol=1.0)


def test_sensor_noise_and_lost_samples(tmp_path: Path) -> None:
    style = _style("futural", sensor_noise=0.01, sample_drop=0.3)
    points = np.column_stack([np.arange(4000.0), np.zeros(4000)])
    tick, noisy, ticks = _sensor(50, points, style, np.random.default_rng(0))
    assert tick == 50 and ticks[0] == 0 and ticks[-1] == 3999  # the ends stay
    assert 0.25 < 1 - len(ticks) / 4000 < 0.35 and np.all(np.diff(ticks) > 0)
    assert noisy.dtype == np.int64
    assert np.std(noisy[:, 1]) == pytest.approx(0.01 * 150.0, rel=0.1)  # 1.5 sensor units
    options = replace(TINY, n_train_writers=1, forms_per_writer=1, n_test_writers=1,
                      sample_drop=(0.3, 0.3))
    corpus = generate_iamondb(tmp_path / "c", options, progress=False)
    lost = total = 0
    for path in corpus.glob("lineStrokes/*/*/*.xml"):
        for stroke in ET.parse(path).getroot().iter("Stroke"):
            times = [round(100 * float(p.get("time"))) for p in stroke.iter("Point")]
            assert times[0] == round(100 * float(stroke.get("start_time")))
            assert times[-1] == round(100 * float(stroke.get("end_time")))
            assert np.all(np.diff(times) > 0)
            lost += times[-1] - times[0] + 1 - len(times)
            total += max(times[-1] - times[0] - 1, 0)
    assert 0.25 < lost / total < 0.35
