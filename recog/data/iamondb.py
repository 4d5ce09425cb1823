"""IAM-OnDB reader: ``lineStrokes/`` XML ink, ``ascii/`` transcriptions, the t1 split files.

The task IAM-OnDB-t1 (fki.tic.heia-fr.ch) divides the forms into ``trainset.txt`` (train),
``testset_v.txt`` (validation 1), ``testset_t.txt`` (validation 2) and ``testset_f.txt``
(the final test set; several public implementations swap it with a validation set, see
literature §3.2). Line N of a form's ``CSR:`` section belongs to the line file ending in
``-0N.xml``. Line files without a transcription and transcriptions without a line file
are rejected and listed, never dropped silently. ``root`` may also hold the distributed
``lineStrokes-all.tar.gz`` and ``ascii-all.tar.gz``; they are unpacked into ``unpack_dir``.
The writer of a line is the ``writerID`` of the form's original whiteboard file
(``original/<a01>/<a01-000>/strokes<u>.xml``, from ``original-xml-all.tar.gz``, unpacked
beside ``lineStrokes/`` or as the archive beside the others) when it is there, so that
per-writer tables are per writer; else the form id (``lineStrokes`` files do not name
their writer).
"""

from __future__ import annotations

import re
import tarfile
import xml.parsers.expat
from pathlib import Path

import numpy as np

from recog.data.utterance import Corpus, DataError, Rejections, Utterance

SPLIT_FILES = {"train": "trainset.txt", "val1": "testset_v.txt", "val2": "testset_t.txt",
               "test": "testset_f.txt"}
# Lines per split as published for IAM-OnDB-t1 (Liwicki/Graves-era papers; literature §3.2).
PUBLISHED_LINES = {"train": 5364, "val1": 1438, "val2": 1518, "test": 3859}
ARCHIVES = ("lineStrokes-all.tar.gz", "ascii-all.tar.gz")
ORIGINAL_ARCHIVE = "original-xml-all.tar.gz"  # optional: original/…/strokes*.xml, writer ids
_ENTITIES = {"&quot;": '"', "&apos;": "'", "&lt;": "<", "&gt;": ">", "&amp;": "&"}
_FORM = re.compile(r"([a-z]\d\d)-(\d\d\d[a-z]?)([a-z]?)$")
_LINE_NUMBER = re.compile(r"-(\d+)")
_MAX_COORD = 1e9  # sensor units; beyond this a coordinate is corrupt (whiteboards: < 1e5)


def read_line_strokes(path: str | Path) -> list[np.ndarray]:
    """The strokes of a line file, each an (N, 3) array of (x, y, time), in writing order."""
    path = Path(path)
    strokes: list[list[tuple[float, float, float]]] = []
    stroke_line = [0]
    parser = xml.parsers.expat.ParserCreate()

    def start(name: str, attrs: dict[str, str]) -> None:
        if name == "Stroke":
            strokes.append([])
            stroke_line[0] = parser.CurrentLineNumber
        elif name == "Point":
            if not strokes:
                raise DataError(path, "Point outside a Stroke", parser.CurrentLineNumber)
            try:
                x, y = float(attrs["x"]), float(attrs["y"])
                t = float(attrs.get("time", "nan"))
            except (KeyError, ValueError):
                raise DataError(path, f"Point needs numeric x, y and time, got {attrs}",
                                parser.CurrentLineNumber) from None
            if not (np.isfinite(x) and np.isfinite(y)) or abs(x) > _MAX_COORD \
                    or abs(y) > _MAX_COORD or np.isinf(t):
                raise DataError(path, f"Point coordinates out of range: {attrs}",
                                parser.CurrentLineNumber)
            strokes[-1].append((x, y, t))

    def end(name: str) -> None:
        if name == "Stroke" and strokes and not strokes[-1]:
            raise DataError(path, "Stroke has no points", stroke_line[0])

    parser.StartElementHandler, parser.EndElementHandler = start, end
    parse_xml_file(parser, path, "line file")
    if not strokes:
        raise DataError(path, "no strokes (StrokeSet is empty)")
    if len(strokes) == 1 and len(strokes[0]) == 1:
        raise DataError(path, "the line's ink is a single point (a one-point stroke alone)",
                        stroke_line[0])
    return [np.asarray(s, dtype=np.float64) for s in strokes]


def parse_xml_file(parser: xml.parsers.expat.XMLParserType, path: Path, what: str) -> None:
    """Run an expat parser (its handlers set) over a file; failures are DataErrors naming
    the file, and the line where the XML breaks."""
    try:
        with path.open("rb") as f:
            parser.ParseFile(f)
    except FileNotFoundError:
        raise DataError(path, f"{what} is missing") from None
    except IsADirectoryError:
        raise DataError(path, f"{what} is a folder") from None
    except LookupError as e:  # an XML declaration naming an encoding Python does not know
        raise DataError(path, f"malformed XML: {e}", 1) from None
    except xml.parsers.expat.ExpatError as e:
        raise DataError(path, f"malformed XML: {xml.parsers.expat.ErrorString(e.code)}",
                        e.lineno) from None


def read_transcription(path: Path) -> list[str]:
    """The ``CSR:`` lines of a form's ascii file (ISO-8859-1, XML entities decoded)."""
    lines = _read_latin1(path, "transcription").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "CSR:")
    except StopIteration:
        raise DataError(path, "no 'CSR:' section") from None
    body = lines[start + 1:]
    while body and not body[0].strip():
        body.pop(0)
    while body and not body[-1].strip():
        body.pop()
    out = []
    for line in body:
        for entity, char in _ENTITIES.items():
            line = line.replace(entity, char)
        out.append(line)
    return out


def _read_latin1(path: Path, what: str) -> str:
    """A text file of the corpus (ISO-8859-1: every byte is a character)."""
    if not path.is_file():
        raise DataError(path, f"{what} is missing")
    return path.read_bytes().decode("iso-8859-1")


def read_split_file(path: Path) -> list[str]:
    """Form ids listed in a split file, one per line (with or without the copy letter)."""
    ids = []
    for n, line in enumerate(_read_latin1(path, "split file").splitlines(), 1):
        form = line.strip()
        if not form:
            continue
        if not _FORM.match(form):
            raise DataError(path, f"not a form id: {form!r}", n)
        ids.append(form)
    return ids


def find_iamondb_root(root: str | Path, unpack_dir: str | Path | None = None) -> Path:
    """The folder holding lineStrokes/, ascii/ and the split files (root, or one level down);
    archives found there are unpacked into ``unpack_dir`` first."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "IAM-OnDB root is not a folder")
    for c in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if (c / SPLIT_FILES["train"]).is_file():
            if (c / "lineStrokes").is_dir() and (c / "ascii").is_dir():
                return c
            if all((c / a).is_file() for a in ARCHIVES):
                return _unpack(c, Path(unpack_dir or c / "unpacked"))
    raise DataError(root, "no IAM-OnDB found: expected trainset.txt with lineStrokes/ and "
                    f"ascii/ (or {' and '.join(ARCHIVES)}) in it or one level down")


def _unpack(folder: Path, dest: Path) -> Path:
    done = dest / ".unpacked"
    if not done.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        archives = list(zip(ARCHIVES, ("lineStrokes", "ascii"), strict=True))
        if (folder / ORIGINAL_ARCHIVE).is_file():  # optional: the writers' ids
            archives.append((ORIGINAL_ARCHIVE, "original"))
        for archive, top in archives:
            try:
                with tarfile.open(folder / archive) as tar:
                    members = [m for m in tar.getmembers()
                               if m.name.lstrip("./").startswith(top)]
                    tar.extractall(dest, members=members, filter="data")
            except (tarfile.TarError, EOFError, OSError) as e:
                raise DataError(folder / archive, f"unreadable archive: {e}") from None
        for split_file in SPLIT_FILES.values():
            (dest / split_file).write_text(_read_latin1(folder / split_file, "split file"),
                                           encoding="iso-8859-1")
        done.touch()
    return dest


def _form_files(tree: Path, form: str) -> list[tuple[str, Path]]:
    """(form id, ascii path) of a listed form; a form id without copy letter means all."""
    group, number = form[:3], form[:7]
    folder = tree / "ascii" / group / number
    if len(form) == 8:
        return [(form, folder / f"{form}.txt")] if (folder / f"{form}.txt").is_file() else []
    return [(p.stem, p) for p in sorted(folder.glob(f"{form}*.txt"))]


def _writer_id(path: Path) -> str | None:
    """The ``writerID`` attribute near the top of an XML file, if it has one."""
    match = re.search(rb'writerID="([^"]+)"', path.read_bytes()[:4096])
    return match.group(1).decode("iso-8859-1").strip() or None if match else None


def original_xml(tree: Path, form: str) -> Path:
    """Where the form's original whiteboard file lies (``original-xml-all``):
    ``original/a01/a01-000/strokesu.xml`` for form a01-000u."""
    return tree / "original" / form[:3] / form[:7] / f"strokes{form[7:]}.xml"


def _writer(tree: Path, xml_path: Path, form: str) -> str:
    """The real writer: the line file's ``writerID``, else the form's original XML's (the
    ``<Form writerID=...>`` of original/…/strokes*.xml, where the user has unpacked
    original-xml-all), else the form id."""
    original = original_xml(tree, form)
    return (_writer_id(xml_path) or (_writer_id(original) if original.is_file() else None)
            or form)


def read_iamondb(root: str | Path, *, skip_bad: bool = False,
                 unpack_dir: str | Path | None = None) -> Corpus:
    """Read the four t1 splits; bad items stop the read unless ``skip_bad``; lines missing
    their transcription (or ink) are always listed as rejected, never an error."""
    tree = find_iamondb_root(root, unpack_dir)
    rejections = Rejections(skip_bad)
    rejected: list[DataError] = []
    splits: dict[str, list[Utterance]] = {}
    for split, split_file in SPLIT_FILES.items():
        utts: list[Utterance] = []
        listed = read_split_file(tree / split_file)
        for form in listed:
            files = _form_files(tree, form)
            if not files:
                rejections.add(DataError(tree / split_file, f"form {form} has no ascii file"))
            for form_id, ascii_path in files:
                utts.extend(_read_form(tree, form_id, ascii_path, rejections, rejected))
        splits[split] = utts
        if not utts:
            rejections.add(DataError(tree / split_file, f"split {split!r} is empty"))
    return Corpus(tree, splits, rejections.items + rejected)


def _read_form(tree: Path, form: str, ascii_path: Path, rejections: Rejections,
               rejected: list[DataError]) -> list[Utterance]:
    group, number = form[:3], form[:7]
    line_files = sorted((tree / "lineStrokes" / group / number).glob(f"{form}-*.xml"))
    try:
        text_lines = read_transcription(ascii_path) if ascii_path.is_file() else []
    except DataError as e:
        rejections.add(e)
        return []
    out = []
    by_number = {}
    for p in line_files:
        number = _LINE_NUMBER.fullmatch(p.stem[len(form):])
        if number is None:
            rejected.append(DataError(p, f"not a line file name of form {form} "
                                      f"(expected {form}-NN.xml)"))
            continue
        by_number[int(number.group(1))] = p
    for n in sorted(set(by_number) | set(range(1, len(text_lines) + 1))):
        xml_path = by_number.get(n)
        if xml_path is None:
            rejected.append(DataError(ascii_path, f"transcription line {n} has no line file "
                                      f"({form}-{n:02d}.xml)"))
            continue
        if n > len(text_lines) or not text_lines[n - 1].strip():
            rejected.append(DataError(xml_path, "line file has no transcription "
                                      f"(no CSR line {n} in {ascii_path.name})"))
            continue
        try:
            read_line_strokes(xml_path)
        except DataError as e:
            rejections.add(e)
            continue
        text, writer = text_lines[n - 1], _writer(tree, xml_path, form)
        out.append(Utterance(id=xml_path.stem, speaker=writer, source=str(xml_path),
                             tokens=tuple(text), text=text,
                             extra={"writer": writer, "form": form}))
    return out
