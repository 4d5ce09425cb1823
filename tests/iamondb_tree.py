"""Builds small IAM-OnDB trees for the tests: lineStrokes XML, ascii forms, split files.

Each character is drawn as a little zig-zag whose shape depends on the character, so a
model can learn the tiny task.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

FORMS = {  # form id -> (split file, lines)
    "a01-000u": ("trainset.txt", ["ab ba", "a b", "ba &quot;ab&quot;"]),
    "a01-001z": ("trainset.txt", ["bab", "ab#"]),
    "b02-010x": ("testset_v.txt", ["ab", "b a"]),
    "c03-020": ("testset_t.txt", ["ba"]),
    "d04-030u": ("testset_f.txt", ["a b", "abba"]),
}


def stroke_xml(text: str, t0: float = 100.0) -> str:
    """Whiteboard XML with one stroke per character (none for spaces)."""
    strokes, x, t = [], 1000, t0
    for ch in text:
        if ch == " ":
            x += 120
            continue
        height = 60 + 40 * (ord(ch) % 3)
        points = []
        for k in range(6):
            points.append(f'      <Point x="{x + 12 * k}" y="{1000 - height * (k % 2)}" '
                          f'time="{t:.2f}"/>')
            t += 0.01
        strokes.append(f'    <Stroke colour="black" start_time="{t - 0.06:.2f}" '
                       f'end_time="{t - 0.01:.2f}">\n' + "\n".join(points) + "\n    </Stroke>")
        x += 80
        t += 0.1
    return ('<?xml version="1.0" encoding="ISO-8859-1"?>\n<WhiteboardCaptureSession>\n'
            '  <WhiteboardDescription>\n    <SensorLocation corner="top_left"/>\n'
            '    <DiagonallyOppositeCoords x="6512" y="1376"/>\n'
            '  </WhiteboardDescription>\n  <StrokeSet>\n' + "\n".join(strokes)
            + "\n  </StrokeSet>\n</WhiteboardCaptureSession>\n")


def make_tree(root: Path, forms: dict = FORMS, archives: bool = False) -> Path:
    """Write an IAM-OnDB tree at root/IAM-OnDB (or its two archives and the split files)."""
    base = root / "IAM-OnDB"
    stage = root / "staging" if archives else base
    splits: dict[str, list[str]] = {}
    for form, (split_file, lines) in forms.items():
        for copy in ([form] if len(form) == 8 else [form + "u", form + "x"]):
            group, number = copy[:3], copy[:7]
            ascii_dir = stage / "ascii" / group / number
            ascii_dir.mkdir(parents=True, exist_ok=True)
            body = "\n".join(lines)
            (ascii_dir / f"{copy}.txt").write_bytes(
                f"OCR:\n\n{body}\n\nCSR:\n\n{body}\n".encode("iso-8859-1"))
            line_dir = stage / "lineStrokes" / group / number
            line_dir.mkdir(parents=True, exist_ok=True)
            for n, text in enumerate(lines, 1):
                plain = text.replace("&quot;", '"')
                (line_dir / f"{copy}-{n:02d}.xml").write_text(stroke_xml(plain),
                                                             encoding="iso-8859-1")
        splits.setdefault(split_file, []).append(form)
    base.mkdir(parents=True, exist_ok=True)
    for split_file, listed in splits.items():
        (base / split_file).write_text("".join(f"{f}\n" for f in listed))
    if archives:
        for name, top in (("lineStrokes-all.tar.gz", "lineStrokes"), ("ascii-all.tar.gz", "ascii")):
            with tarfile.open(base / name, "w:gz") as tar:
                tar.add(stage / top, arcname=top)
    return base
