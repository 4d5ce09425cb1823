"""W3C InkML reader (Ink Markup Language, W3C Recommendation 20 September 2011).

``read_inkml(path)`` returns the pen-down traces of a file as (N, 3) arrays of (x, y, t) in
document order, with t in seconds, like ``recog.data.iamondb.read_line_strokes``, and the
transcription and writer from its ``<annotation type="truth">`` and ``type="writer"``.

What is read, and how:
- Elements in the InkML namespace (``http://www.w3.org/2003/InkML``, with any prefix, e.g.
  ``inkml:trace``) or in no namespace; other namespaces (``msink:``, ``emma:``) are ignored.
- Channel order from the ``<traceFormat>`` that applies to each trace: the trace's
  ``contextRef`` (a ``<context>`` holding a ``<traceFormat>``, naming one by
  ``traceFormatRef``, or pointing to an ``<inkSource>`` by ``inkSourceRef``), else the
  ``<context>`` or ``<traceFormat>`` last met in the ink body, else the only trace format the
  file defines, else the InkML default (X Y). Channels of an ``<intermittentChannels>``
  block may follow the regular ones in a point and are skipped.
- Trace values: points separated by ``,``; values by white space or by a sign or prefix that
  starts the next value (``1125 18432'23'43"7"-8``). The prefix ``!`` marks an explicit
  value, ``'`` a first difference (the change from the previous point) and ``"`` a second
  difference (the change of that change); a prefix stays in force for later values of the
  same channel until another one is given. The first point must be explicit, and a second
  difference needs two earlier points. ``T``/``F`` (booleans) read as 1/0; the wildcards
  ``?`` and ``*`` are refused.
- Time: the ``T`` channel, in the channel's ``units`` (``s``, ``ms``, ``us``; ``ms`` when
  none is given, as tablets write it). Without a ``T`` channel the points are taken as
  sampled every 10 ms with a 10 ms pen lift, as the JSON stroke format assumes.
- ``type="penUp"`` traces (hover) are not ink and are left out; every other trace is kept.
- Transcription: the ``truth`` annotation of ``<ink>`` itself; else the truths of the
  outermost ``<traceGroup>`` elements that carry one, joined by spaces in document order
  (a file segmented into words).

Bad InkML (malformed XML, no traces, a non-numeric value, a point with the wrong number of
values) is a ``DataError`` naming the file and line.
"""

from __future__ import annotations

import re
import xml.parsers.expat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recog.data.iamondb import parse_xml_file
from recog.data.utterance import DataError

INKML_NS = "http://www.w3.org/2003/InkML"
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_DEFAULT_CHANNELS = ("X", "Y")
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_SAMPLE_S = 0.01  # assumed sampling interval without a T channel
_MAX_COORD = 1e9
_VALUE = re.compile(r"""\s*([!'"]?)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[TF?*])""")


@dataclass
class _Node:
    """An XML element in the InkML (or no) namespace, with the line it starts on."""

    name: str
    attrs: dict[str, str]
    line: int
    children: list[_Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    text_line: int = 0

    def find(self, name: str) -> _Node | None:
        return next((c for c in self.children if c.name == name), None)


@dataclass(frozen=True)
class InkmlInk:
    """What an InkML file holds for recognition."""

    strokes: list[np.ndarray]  # (N, 3) x, y, t (seconds) per pen-down trace
    truth: str | None  # the transcription, if the file has one
    writer: str | None


def _parse(path: Path) -> _Node:
    """The element tree of the file (InkML elements only, with line numbers)."""
    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    stack: list[_Node | None] = []
    root: list[_Node] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        ns, _, name = tag.rpartition(" ")
        if ns not in ("", INKML_NS):
            stack.append(None)
            return
        plain = {k.rpartition(" ")[2] if k.startswith(_XML_NS) or " " not in k
                 else k: v for k, v in attrs.items()}
        node = _Node(name, plain, parser.CurrentLineNumber)
        parent = stack[-1] if stack else None
        if parent is not None:
            parent.children.append(node)
        elif not stack:
            root.append(node)
        stack.append(node)

    def end(tag: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        node = stack[-1] if stack else None
        if node is not None:
            if not node.text:
                node.text_line = parser.CurrentLineNumber
            node.text.append(data)

    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler = chars
    parse_xml_file(parser, path, "InkML file")
    if not root or root[0].name != "ink":
        raise DataError(path, "not InkML: the root element is not <ink> in the InkML "
                        f"namespace ({INKML_NS})", 1)
    return root[0]


@dataclass(frozen=True)
class _Format:
    channels: tuple[str, ...]
    extra: int  # intermittent channels that may follow
    time_scale: float  # seconds per unit of the T channel


def _format(node: _Node, path: Path) -> _Format:
    channels, units = [], {}
    for c in node.children:
        if c.name == "channel":
            name = c.attrs.get("name", "")
            if not name:
                raise DataError(path, "<channel> without a name", c.line)
            channels.append(name)
            units[name] = (c.attrs.get("units") or "ms", c.line)
    intermittent = node.find("intermittentChannels")
    extra = sum(c.name == "channel" for c in intermittent.children) if intermittent else 0
    if not {"X", "Y"} <= set(channels):
        raise DataError(path, f"traceFormat has channels {channels}: X and Y are needed",
                        node.line)
    scale = 1.0
    if "T" in units:
        unit, line = units["T"]
        if unit not in _TIME_UNITS:
            raise DataError(path, f"T channel in unknown units {unit!r} (s, ms or us)", line)
        scale = _TIME_UNITS[unit]
    return _Format(tuple(channels), extra, scale)


class _Formats:
    """Trace formats by id, contexts by id, and the file's default."""

    def __init__(self, ink: _Node, path: Path):
        self.path = path
        self.by_id: dict[str, _Format] = {}
        self.contexts: dict[str, _Node] = {}
        self.sources: dict[str, _Node] = {}
        every: list[_Node] = []

        def collect(node: _Node) -> None:
            for c in node.children:
                key = c.attrs.get("id")
                if c.name == "traceFormat":
                    every.append(c)
                    if key:
                        self.by_id[key] = _format(c, path)
                elif c.name == "context" and key:
                    self.contexts[key] = c
                elif c.name == "inkSource" and key:
                    self.sources[key] = c
                if c.name != "trace":
                    collect(c)

        collect(ink)
        self.only = _format(every[0], path) if len(every) == 1 else None

    def _ref(self, table: dict, ref: str, what: str, line: int) -> _Node | _Format:
        key = ref[1:] if ref.startswith("#") else ref
        if key not in table:
            raise DataError(self.path, f"{what} {ref!r} is not defined in this file", line)
        return table[key]

    def of_context(self, ctx: _Node, seen: frozenset[str] = frozenset()) -> _Format | None:
        """The trace format a <context> (or <inkSource>) gives, if any."""
        inline = ctx.find("traceFormat")
        if inline is not None:
            return _format(inline, self.path)
        if "traceFormatRef" in ctx.attrs:
            return self._ref(self.by_id, ctx.attrs["traceFormatRef"], "traceFormat",
                             ctx.line)  # type: ignore[return-value]
        src = ctx.find("inkSource")
        if src is not None:
            return self.of_context(src, seen)
        for attr, table in (("inkSourceRef", self.sources), ("contextRef", self.contexts)):
            if attr in ctx.attrs and ctx.attrs[attr] not in seen:
                node = self._ref(table, ctx.attrs[attr], attr[:-3], ctx.line)
                return self.of_context(node, seen | {ctx.attrs[attr]})  # type: ignore[arg-type]
        return None

    def default(self) -> _Format:
        return self.only or _Format(_DEFAULT_CHANNELS, 0, 1.0)


def _values(text: str, path: Path, line: int, n: int, k: int) -> list[tuple[str, float]]:
    """(prefix, value) pairs of one point's text."""
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _VALUE.match(text, pos)
        if m is None:
            bad = text[pos:].strip().split()[0]
            raise DataError(path, f"point {k + 1}: {bad!r} is not a number", line)
        prefix, token = m.groups()
        if token in "?*":
            raise DataError(path, f"point {k + 1}: wildcard value {token!r} is not supported",
                            line)
        out.append((prefix, {"T": 1.0, "F": 0.0}[token] if token in "TF" else float(token)))
        pos = m.end()
    if not n <= len(out):
        raise DataError(path, f"point {k + 1} has {len(out)} value(s); the trace format has "
                        f"{n} channels", line)
    return out


def _decode(node: _Node, fmt: _Format, path: Path) -> np.ndarray:
    """The (N, channels) values of a <trace>, differences undone."""
    text = "".join(node.text)
    line = node.text_line or node.line
    n = len(fmt.channels)
    mode, prev, vel = ["!"] * n, [0.0] * n, [0.0] * n
    rows = []
    chunks = text.split(",")
    for k, chunk in enumerate(chunks):
        here = line + chunk[: len(chunk) - len(chunk.lstrip())].count("\n")
        line += chunk.count("\n")
        if not chunk.strip():
            if len(chunks) == 1:
                break
            raise DataError(path, f"point {k + 1} is empty", here)
        values = _values(chunk, path, here, n, k)
        if len(values) > n + fmt.extra:
            raise DataError(path, f"point {k + 1} has {len(values)} values; the trace format "
                            f"has {n} channels" + (f" and {fmt.extra} intermittent"
                                                   if fmt.extra else ""), here)
        row = []
        for c, (prefix, v) in enumerate(values[:n]):
            mode[c] = prefix or mode[c]
            if mode[c] != "!" and k == 0:
                raise DataError(path, "the first point of a trace must be explicit", here)
            if mode[c] == '"' and k == 1:
                raise DataError(path, "point 2: a second difference needs two earlier "
                                "points", here)
            if mode[c] == "!":
                value = v
            elif mode[c] == "'":
                value = prev[c] + v
            else:
                value = prev[c] + vel[c] + v
            vel[c], prev[c] = value - prev[c], value
            row.append(value)
        rows.append(row)
    if not rows:
        raise DataError(path, "trace has no points", node.line)
    return np.asarray(rows, dtype=np.float64)


def _truth(node: _Node) -> list[str]:
    """Truth annotations: this node's own, else those of its outermost traceGroups."""
    for c in node.children:
        if c.name == "annotation" and c.attrs.get("type") == "truth":
            return ["".join(c.text).strip()]
    return [t for c in node.children if c.name == "traceGroup" for t in _truth(c)]


def read_inkml(path: str | Path) -> InkmlInk:
    """The pen-down traces, transcription and writer of an InkML file (see module doc)."""
    path = Path(path)
    ink = _parse(path)
    formats = _Formats(ink, path)
    strokes: list[np.ndarray] = []
    current = [formats.default()]
    lines: list[int] = []

    def walk(node: _Node) -> None:
        for c in node.children:
            if c.name == "definitions":
                continue
            if c.name == "traceFormat":
                current[0] = _format(c, path)
            elif c.name == "context":
                current[0] = formats.of_context(c) or current[0]
            elif c.name == "trace":
                fmt = current[0]
                if "contextRef" in c.attrs:
                    ctx = formats._ref(formats.contexts, c.attrs["contextRef"], "context",
                                       c.line)
                    fmt = formats.of_context(ctx) or fmt  # type: ignore[arg-type]
                values = _decode(c, fmt, path)
                if c.attrs.get("type") != "penUp":
                    strokes.append(_points(values, fmt, c, path))
                    lines.append(c.line)
            elif c.name == "traceGroup":
                walk(c)

    walk(ink)
    if not strokes:
        raise DataError(path, "no pen-down <trace> in the file", ink.line)
    if len(strokes) == 1 and len(strokes[0]) == 1:
        raise DataError(path, "the ink is a single point", lines[0])
    timed = [bool(np.isfinite(s[:, 2]).all()) for s in strokes]
    if not any(timed):
        strokes = _clock(strokes)
    elif not all(timed):
        raise DataError(path, "some traces have a T channel and others not",
                        lines[timed.index(False)])
    truths = [t for t in _truth(ink) if t]
    writer = next(("".join(c.text).strip() for c in ink.children
                   if c.name == "annotation" and c.attrs.get("type") == "writer"), None)
    return InkmlInk(strokes, " ".join(truths) if truths else None, writer or None)


def _points(values: np.ndarray, fmt: _Format, node: _Node, path: Path) -> np.ndarray:
    """(x, y, t) of a decoded trace; t is NaN where the format has no T channel."""
    ch = fmt.channels
    xy = values[:, [ch.index("X"), ch.index("Y")]]
    if not np.isfinite(xy).all() or np.abs(xy).max() > _MAX_COORD:
        raise DataError(path, "trace coordinates out of range", node.line)
    t = values[:, ch.index("T")] * fmt.time_scale if "T" in ch else np.full(len(xy), np.nan)
    return np.column_stack([xy, t])


def _clock(strokes: list[np.ndarray]) -> list[np.ndarray]:
    """Times for ink without a T channel: one point every 10 ms, a 10 ms pen lift."""
    out, count = [], 0
    for s in strokes:
        out.append(np.column_stack([s[:, :2], (count + np.arange(len(s))) * _SAMPLE_S]))
        count += len(s) + 1
    return out


def read_inkml_strokes(path: str | Path) -> list[np.ndarray]:
    """The pen-down traces of an InkML file as (N, 3) arrays of (x, y, seconds)."""
    return read_inkml(path).strokes
